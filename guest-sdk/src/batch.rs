//! Migrations that work in batches: the `batch` interface of the WIT, and [`Keyset`], a walk
//! over a large table in key order, one batch per call.
//!
//! wasmig calls `upgrade` (or `downgrade`) once per batch, each time in a fresh instance. A
//! call that wants another batch calls [`next`] with a checkpoint (any string: the last key
//! it processed, say) and returns `Ok`; wasmig calls it again, and [`checkpoint`] returns
//! that string. A call that returns without [`next`] is the last one.
//!
//! What a batch is depends on the revision's `transaction` setting in `migration.toml`:
//!
//! - `"per-migration"` (the default): all batches run in the step's one transaction, which
//!   commits after the last one. A failure rolls back every batch.
//! - `"batched"`: every batch commits on its own, together with its checkpoint. A run that is
//!   killed, times out or fails resumes on the next `wasmig up` from the last committed
//!   checkpoint; the revision counts as applied when the last batch has committed. The time
//!   limit (`timeout_secs`) then bounds each batch, not the whole migration.
//!
//! Nothing in guest memory survives from one batch to the next: everything the next batch
//! needs must be in the checkpoint. Work that must happen once (DDL before a backfill) goes
//! in the first batch, when [`checkpoint`] is `None` ([`Keyset::first`] does that).
//!
//! A batched revision with `[partitions]` in its manifest (PostgreSQL) is walked as several
//! key ranges at once, by the workers of `wasmig up --workers N` and of other `wasmig up`
//! runs. Each range's first batch gets a checkpoint the host wrote, which [`partition`]
//! reads; [`Keyset`] walks only its range when it gets one, and runs [`Keyset::first`]
//! only in the first batch of range 0, which commits before any other range starts.
//!
//! ```no_run
//! use wasmig_guest::batch::Keyset;
//! use wasmig_guest::{Dialect, Migration, Result, db, params};
//!
//! struct NormaliseEmails;
//!
//! impl Migration for NormaliseEmails {
//!     fn upgrade() -> Result<()> {
//!         let select = match db::dialect() {
//!             Dialect::Postgres => "SELECT id, email FROM people WHERE id > $1 ORDER BY id LIMIT $2",
//!             Dialect::Sqlite => "SELECT id, email FROM people WHERE id > ?1 ORDER BY id LIMIT ?2",
//!             Dialect::Mysql => "SELECT id, email FROM people WHERE id > ? ORDER BY id LIMIT ?",
//!         };
//!         Keyset::<i64>::new(select)
//!             .size(10_000)
//!             .first(|| db::batch("ALTER TABLE people ADD COLUMN email_norm TEXT"))
//!             .total("SELECT count(*) FROM people")
//!             .run(|rows| {
//!                 let mut ids = Vec::with_capacity(rows.len());
//!                 let mut norms = Vec::with_capacity(rows.len());
//!                 for row in rows {
//!                     ids.push(row.get::<i64>(0)?);
//!                     norms.push(row.get::<Option<String>>(1)?.map(|e| e.trim().to_lowercase()));
//!                 }
//!                 let update = match db::dialect() {
//!                     Dialect::Postgres => "UPDATE people SET email_norm = $1 WHERE id = $2",
//!                     Dialect::Sqlite => "UPDATE people SET email_norm = ?1 WHERE id = ?2",
//!                     Dialect::Mysql => "UPDATE people SET email_norm = ? WHERE id = ?",
//!                 };
//!                 let rows: Vec<_> = ids.into_iter().zip(norms).map(|(id, n)| params![n, id]).collect();
//!                 db::execute_many(update, &rows)?;
//!                 Ok(())
//!             })
//!     }
//!
//!     fn downgrade() -> Result<()> {
//!         db::batch("ALTER TABLE people DROP COLUMN email_norm")
//!     }
//! }
//!
//! wasmig_guest::migration!(NormaliseEmails);
//! ```

use core::marker::PhantomData;

use crate::wit::batch as raw;
use crate::{Error, FromSql, Result, Rows, ToSql, Uuid, db};

/// The checkpoint the previous batch passed to [`next`], or `None` in the first batch of
/// the step (a run resumed from a stored checkpoint starts with that one).
pub fn checkpoint() -> Option<String> {
    raw::checkpoint()
}

/// Asks for another batch after this call returns `Ok`, starting from `checkpoint`. Called
/// more than once in a batch, the last call counts; ignored if the call then fails (the
/// batch is rolled back, its checkpoint with it). The checkpoint must move on: a batch that
/// asks to resume from the checkpoint it was given fails the step (it would repeat forever).
pub fn next(checkpoint: impl Into<String>) {
    raw::next_batch(&checkpoint.into());
}

/// One key range of a partitioned walk (`[partitions]` in the revision's manifest): the
/// keys `first..=last`, range `index` of `count` (from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// Which range, from 0. Range 0 runs its first batch before any other range starts.
    pub index: u32,
    /// How many ranges the walk has.
    pub count: u32,
    /// The first key of the range (the first range: `i64::MIN`).
    pub first: i64,
    /// The last key of the range (the last range: `i64::MAX`).
    pub last: i64,
}

/// The prefix of the checkpoint the host starts each range of a partitioned walk from:
/// `wasmig-partition:1:<index>:<count>:<first>:<last>`.
const PARTITION_SEED: &str = "wasmig-partition:1:";

impl Partition {
    /// The range a checkpoint the host wrote names; `None` for any other checkpoint.
    pub fn parse(checkpoint: &str) -> Option<Partition> {
        let rest = checkpoint.strip_prefix(PARTITION_SEED)?;
        let mut parts = rest.split(':');
        let partition = Partition {
            index: parts.next()?.parse().ok()?,
            count: parts.next()?.parse().ok()?,
            first: parts.next()?.parse().ok()?,
            last: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(partition)
    }
}

/// In the first batch of a range of a partitioned walk, that range (read from the
/// checkpoint the host starts it from); `None` otherwise. [`Keyset`] reads it for you; a
/// walk of your own starts from it, and keeps the range in its own checkpoints.
pub fn partition() -> Option<Partition> {
    checkpoint().as_deref().and_then(Partition::parse)
}

/// A key type [`Keyset`] can walk by: its value is kept in the checkpoint as text.
pub trait Key: ToSql + FromSql {
    /// The key as checkpoint text.
    fn to_checkpoint(&self) -> String;
    /// The key back from checkpoint text.
    ///
    /// # Errors
    ///
    /// When the text is not such a key (a checkpoint written by other code).
    fn from_checkpoint(text: &str) -> Result<Self>;
    /// The key to start below every row: the first batch binds it as the "after" parameter.
    fn before_all() -> Self;

    /// The key as a 64-bit integer, for a partitioned walk's ranges; `None` for keys that
    /// cannot be partitioned (text, UUIDs).
    fn as_i64(&self) -> Option<i64> {
        None
    }

    /// The greatest key below the 64-bit integer `bound` (the walk of a range starting at
    /// `bound` binds it as the "after" parameter); `None` for keys that cannot be
    /// partitioned.
    fn below(bound: i64) -> Option<Self> {
        let _ = bound;
        None
    }
}

macro_rules! integer_key {
    ($($ty:ty),*) => {$(
        impl Key for $ty {
            fn to_checkpoint(&self) -> String {
                self.to_string()
            }

            fn from_checkpoint(text: &str) -> Result<Self> {
                Ok(text.parse()?)
            }

            fn before_all() -> Self {
                <$ty>::MIN
            }

            fn as_i64(&self) -> Option<i64> {
                Some(i64::from(*self))
            }

            fn below(bound: i64) -> Option<Self> {
                // Keys below the type's least start from its least (nothing is below it).
                Some(<$ty>::try_from(bound.saturating_sub(1)).unwrap_or(if bound <= 0 {
                    <$ty>::MIN
                } else {
                    <$ty>::MAX
                }))
            }
        }
    )*};
}

integer_key!(i16, i32, i64);

impl Key for String {
    fn to_checkpoint(&self) -> String {
        self.clone()
    }

    fn from_checkpoint(text: &str) -> Result<Self> {
        Ok(text.to_owned())
    }

    /// The empty string: every other text sorts after it (in any collation).
    fn before_all() -> Self {
        String::new()
    }
}

impl Key for Uuid {
    fn to_checkpoint(&self) -> String {
        self.0.clone()
    }

    fn from_checkpoint(text: &str) -> Result<Self> {
        Ok(Uuid::new(text))
    }

    /// The nil UUID: no UUID sorts before it.
    fn before_all() -> Self {
        Uuid::new("00000000-0000-0000-0000-000000000000")
    }
}

/// Where a [`Keyset`] walk stands, as kept in the checkpoint:
/// `keyset:1:<done>:<total or ->:<last key>`, or for one range of a partitioned walk
/// `keyset:2:<done>:<total or ->:<last key of the range>:<last key>` (the key last, so it
/// needs no escaping).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Position<K> {
    /// Rows processed so far, over every batch (of the range, when partitioned).
    done: u64,
    /// The total counted in the first batch, if asked for.
    total: Option<u64>,
    /// A partitioned walk: the last key of its range.
    upto: Option<i64>,
    /// The key of the last row processed.
    after: K,
}

const PREFIX: &str = "keyset:1:";
const RANGE_PREFIX: &str = "keyset:2:";

impl<K: Key> Position<K> {
    fn encode(&self) -> String {
        let total = self.total.map_or_else(|| "-".to_owned(), |t| t.to_string());
        match self.upto {
            None => format!(
                "{PREFIX}{}:{total}:{}",
                self.done,
                self.after.to_checkpoint()
            ),
            Some(upto) => format!(
                "{RANGE_PREFIX}{}:{total}:{upto}:{}",
                self.done,
                self.after.to_checkpoint()
            ),
        }
    }

    fn decode(text: &str) -> Result<Self> {
        let bad = || {
            Error::msg(format!(
                "the checkpoint {text:?} was not written by a Keyset walk (expected `{PREFIX}DONE:TOTAL:KEY` or `{RANGE_PREFIX}DONE:TOTAL:LAST:KEY`)"
            ))
        };
        let (rest, ranged) = match (text.strip_prefix(PREFIX), text.strip_prefix(RANGE_PREFIX)) {
            (Some(rest), _) => (rest, false),
            (None, Some(rest)) => (rest, true),
            (None, None) => return Err(bad()),
        };
        let mut parts = rest.splitn(if ranged { 4 } else { 3 }, ':');
        let (Some(done), Some(total)) = (parts.next(), parts.next()) else {
            return Err(bad());
        };
        let upto = match ranged {
            true => Some(
                parts
                    .next()
                    .and_then(|u| u.parse::<i64>().ok())
                    .ok_or_else(bad)?,
            ),
            false => None,
        };
        let after = parts.next().ok_or_else(bad)?;
        Ok(Position {
            done: done.parse().map_err(|_| bad())?,
            total: match total {
                "-" => None,
                t => Some(t.parse().map_err(|_| bad())?),
            },
            upto,
            after: K::from_checkpoint(after).map_err(|e| e.context("the checkpoint's key"))?,
        })
    }
}

/// A walk over a table in key order, one batch of rows per call, resumable from its
/// checkpoint: the keyset pagination a data migration on a large table needs (no `OFFSET`,
/// no cursor held across batches).
///
/// `select` returns the rows of one batch. Its first column is the key (unique, and the
/// order of the walk), its first parameter the key of the last row already processed, its
/// second the batch size: `SELECT id, email FROM people WHERE id > $1 ORDER BY id LIMIT $2`
/// (`?1`, `?2` on SQLite; `?`, `?` on MySQL, where they bind in that order). Each call of
/// [`Keyset::run`] processes one batch and, unless it was the last (fewer rows than the
/// batch size), asks for the next with a checkpoint that holds the last key and the rows
/// done so far. It reports progress as it goes.
///
/// `K` is the key's Rust type: `i16`, `i32`, `i64`, `String` or [`Uuid`].
#[must_use = "a Keyset does nothing until `run`"]
pub struct Keyset<'a, K> {
    select: &'a str,
    size: u32,
    total: Option<&'a str>,
    first: Option<Box<dyn FnOnce() -> Result<()> + 'a>>,
    key: PhantomData<K>,
}

impl<'a, K: Key> Keyset<'a, K> {
    /// A walk with `select` (see above), 1,000 rows per batch.
    pub fn new(select: &'a str) -> Self {
        Keyset {
            select,
            size: 1_000,
            total: None,
            first: None,
            key: PhantomData,
        }
    }

    /// Rows per batch (at least 1). Larger batches mean fewer round trips and commits; in a
    /// `batched` revision, smaller ones mean less work lost when a run is interrupted and
    /// shorter row locks.
    pub fn size(mut self, rows: u32) -> Self {
        self.size = rows.max(1);
        self
    }

    /// A query returning the number of rows the walk will process (`SELECT count(*) FROM
    /// people`), run once in the first batch, for the progress bar's total and ETA.
    pub fn total(mut self, count: &'a str) -> Self {
        self.total = Some(count);
        self
    }

    /// Work to do once, before the first batch (in its transaction): DDL such as adding
    /// the column a backfill fills. Not run again in later batches, nor when a run resumes.
    pub fn first(mut self, once: impl FnOnce() -> Result<()> + 'a) -> Self {
        self.first = Some(Box::new(once));
        self
    }

    /// Processes one batch: runs `select` after the checkpoint's key, hands the rows to
    /// `process`, and asks for the next batch if this one was full.
    ///
    /// # Errors
    ///
    /// The error of `select`, of the count, of `first` or of `process`; a checkpoint not
    /// written by a `Keyset` walk; a first column that is not a `K`.
    pub fn run(self, process: impl FnOnce(&Rows) -> Result<()>) -> Result<()> {
        let checkpoint = checkpoint();
        let mut position = match checkpoint.as_deref().map(|c| (c, Partition::parse(c))) {
            // The first batch of one range of a partitioned walk.
            Some((_, Some(range))) => {
                if range.index == 0
                    && let Some(once) = self.first
                {
                    once()?;
                }
                let after = K::below(range.first).ok_or_else(|| {
                    Error::msg(
                        "a partitioned walk needs an integer key (i16, i32 or i64): [partitions] splits the walk by integer ranges; remove [partitions] from migration.toml, or walk an integer key",
                    )
                })?;
                Position {
                    done: 0,
                    total: None,
                    upto: Some(range.last),
                    after,
                }
            }
            Some((text, None)) => Position::<K>::decode(text)?,
            None => {
                if let Some(once) = self.first {
                    once()?;
                }
                let total = match self.total {
                    Some(count) => {
                        let n: i64 = db::query_one(count, &[])?.get(0)?;
                        Some(u64::try_from(n).unwrap_or(0))
                    }
                    None => None,
                };
                Position {
                    done: 0,
                    total,
                    upto: None,
                    after: K::before_all(),
                }
            }
        };
        let mut rows = db::query(
            self.select,
            &[position.after.to_sql(), i64::from(self.size).to_sql()],
        )?;
        let fetched = rows.len();
        // A range's walk stops at its last key: the rows past it are the next range's.
        if let Some(upto) = position.upto {
            let mut inside = 0;
            for row in rows.iter() {
                let key = row.get::<K>(0)?;
                if key.as_i64().is_some_and(|k| k > upto) {
                    break;
                }
                inside += 1;
            }
            rows.truncate(inside);
        }
        if rows.is_empty() {
            crate::progress(position.done, position.total);
            return Ok(());
        }
        process(&rows)?;
        let last = rows.last().expect("not empty").get::<K>(0)?;
        position.done += rows.len() as u64;
        position.after = last;
        crate::progress(position.done, position.total);
        // Another batch while they come back full and inside the range.
        if fetched as u64 >= u64::from(self.size) && rows.len() == fetched {
            next(position.encode());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_through_the_checkpoint_text() {
        let p = Position {
            done: 20_000,
            total: Some(1_000_000),
            upto: None,
            after: 20_000_i64,
        };
        assert_eq!(p.encode(), "keyset:1:20000:1000000:20000");
        assert_eq!(Position::<i64>::decode(&p.encode()).unwrap(), p);
        // Text keys keep their colons: the key is the last field.
        let t = Position {
            done: 3,
            total: None,
            upto: None,
            after: "a:b:c".to_owned(),
        };
        assert_eq!(t.encode(), "keyset:1:3:-:a:b:c");
        assert_eq!(Position::<String>::decode(&t.encode()).unwrap(), t);
        // One range of a partitioned walk keeps its last key.
        let r = Position {
            done: 7,
            total: None,
            upto: Some(-5),
            after: -12_i64,
        };
        assert_eq!(r.encode(), "keyset:2:7:-:-5:-12");
        assert_eq!(Position::<i64>::decode(&r.encode()).unwrap(), r);
    }

    #[test]
    fn partition_seeds_parse_and_other_checkpoints_do_not() {
        assert_eq!(
            Partition::parse("wasmig-partition:1:2:8:-9223372036854775808:125000"),
            Some(Partition {
                index: 2,
                count: 8,
                first: i64::MIN,
                last: 125_000
            })
        );
        assert_eq!(Partition::parse("keyset:1:3:-:7"), None);
        assert_eq!(Partition::parse("wasmig-partition:1:2:8:1"), None);
        assert_eq!(Partition::parse("wasmig-partition:1:2:8:1:2:3"), None);
    }

    #[test]
    fn a_range_starts_below_its_first_key_within_the_key_type() {
        assert_eq!(i64::below(100), Some(99));
        assert_eq!(i64::below(i64::MIN), Some(i64::MIN));
        assert_eq!(i32::below(i64::MIN), Some(i32::MIN));
        assert_eq!(i32::below(i64::MAX), Some(i32::MAX));
        assert_eq!(i16::below(5), Some(4));
        assert_eq!(String::below(5), None);
    }

    #[test]
    fn foreign_checkpoints_are_refused_with_a_message() {
        let err = Position::<i64>::decode("42").unwrap_err();
        assert!(
            err.to_string().contains("not written by a Keyset walk"),
            "{err}"
        );
        assert!(Position::<i64>::decode("keyset:1:x:-:1").is_err());
        assert!(Position::<i64>::decode("keyset:1:1:-:nope").is_err());
    }

    #[test]
    fn walks_start_below_every_key() {
        assert_eq!(i64::before_all(), i64::MIN);
        assert_eq!(String::before_all(), "");
        assert_eq!(
            Uuid::before_all().as_str(),
            "00000000-0000-0000-0000-000000000000"
        );
    }
}

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
//!                     Dialect::Postgres => "UPDATE people SET email_norm = $2 WHERE id = $1",
//!                     Dialect::Sqlite => "UPDATE people SET email_norm = ?2 WHERE id = ?1",
//!                 };
//!                 let rows: Vec<_> = ids.into_iter().zip(norms).map(|(id, n)| params![id, n]).collect();
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
/// `keyset:1:<done>:<total or ->:<last key>` (the key last, so it needs no escaping).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Position<K> {
    /// Rows processed so far, over every batch.
    done: u64,
    /// The total counted in the first batch, if asked for.
    total: Option<u64>,
    /// The key of the last row processed.
    after: K,
}

const PREFIX: &str = "keyset:1:";

impl<K: Key> Position<K> {
    fn encode(&self) -> String {
        let total = self.total.map_or_else(|| "-".to_owned(), |t| t.to_string());
        format!(
            "{PREFIX}{}:{total}:{}",
            self.done,
            self.after.to_checkpoint()
        )
    }

    fn decode(text: &str) -> Result<Self> {
        let bad = || {
            Error::msg(format!(
                "the checkpoint {text:?} was not written by a Keyset walk (expected `{PREFIX}DONE:TOTAL:KEY`)"
            ))
        };
        let rest = text.strip_prefix(PREFIX).ok_or_else(bad)?;
        let mut parts = rest.splitn(3, ':');
        let (Some(done), Some(total), Some(after)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        Ok(Position {
            done: done.parse().map_err(|_| bad())?,
            total: match total {
                "-" => None,
                t => Some(t.parse().map_err(|_| bad())?),
            },
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
/// (`?1`, `?2` on SQLite). Each call of [`Keyset::run`] processes one batch and, unless it
/// was the last (fewer rows than the batch size), asks for the next with a checkpoint that
/// holds the last key and the rows done so far. It reports progress as it goes.
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
        let mut position = match checkpoint() {
            Some(text) => Position::<K>::decode(&text)?,
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
                    after: K::before_all(),
                }
            }
        };
        let rows = db::query(
            self.select,
            &[position.after.to_sql(), i64::from(self.size).to_sql()],
        )?;
        if rows.is_empty() {
            crate::progress(position.done, position.total);
            return Ok(());
        }
        process(&rows)?;
        let last = rows.last().expect("not empty").get::<K>(0)?;
        position.done += rows.len() as u64;
        position.after = last;
        crate::progress(position.done, position.total);
        if rows.len() as u64 >= u64::from(self.size) {
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
            after: 20_000_i64,
        };
        assert_eq!(p.encode(), "keyset:1:20000:1000000:20000");
        assert_eq!(Position::<i64>::decode(&p.encode()).unwrap(), p);
        // Text keys keep their colons: the key is the last field.
        let t = Position {
            done: 3,
            total: None,
            after: "a:b:c".to_owned(),
        };
        assert_eq!(t.encode(), "keyset:1:3:-:a:b:c");
        assert_eq!(Position::<String>::decode(&t.encode()).unwrap(), t);
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

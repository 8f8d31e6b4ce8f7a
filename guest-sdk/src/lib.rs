//! The Rust SDK for [wasmig](https://github.com/wasmig/wasmig) migrations written as
//! WebAssembly components.
//!
//! A migration is a type implementing [`Migration`], exported with [`migration!`]. It talks to
//! the database through [`db`], on the transaction wasmig opened for it: everything it does
//! commits with the version-table update, or not at all. It logs with [`info!`] and friends
//! and reports progress with [`progress`].
//!
//! This crate owns the idiomatic API over the `migration` world of `wit/migration.wit`:
//! conversions between Rust types and SQL values ([`ToSql`], [`FromSql`]), rows read by index
//! or column name ([`Row`]), one error type ([`Error`]) and logging macros. It does not
//! run anything itself: the host (`wasmig`) does, and the raw generated bindings live in
//! [`bindings`].
//!
//! # Example: a backfill
//!
//! `Cargo.toml` (`wasmig revision --kind rust` writes this for you):
//!
//! ```toml
//! [package]
//! name = "m_normalise_emails"
//! version = "0.1.0"
//! edition = "2024"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! wasmig-guest = { path = "../../guest-sdk" }
//! ```
//!
//! `src/lib.rs`: walk a table through a cursor (a server-side cursor on PostgreSQL, so memory
//! stays bounded however large the table), transform each chunk in Rust, write it back with
//! one prepared statement per chunk, and report progress.
//!
//! ```no_run
//! use wasmig_guest::{Dialect, Migration, Result, db, info, params};
//!
//! struct NormaliseEmails;
//!
//! impl Migration for NormaliseEmails {
//!     fn upgrade() -> Result<()> {
//!         db::batch("ALTER TABLE customers ADD COLUMN email_norm TEXT")?;
//!         let total: i64 = db::query_one("SELECT count(*) FROM customers", &[])?.get(0)?;
//!         // One guest for every database: only the placeholder syntax differs here.
//!         let update = match db::dialect() {
//!             Dialect::Postgres => "UPDATE customers SET email_norm = $1 WHERE id = $2",
//!             Dialect::Sqlite => "UPDATE customers SET email_norm = ?1 WHERE id = ?2",
//!             Dialect::Mysql => "UPDATE customers SET email_norm = ? WHERE id = ?",
//!         };
//!         let mut cursor = db::cursor("SELECT id, email FROM customers ORDER BY id", &[])?;
//!         let mut done = 0;
//!         for chunk in cursor.chunks(1000) {
//!             let mut updates = Vec::new();
//!             for row in &chunk? {
//!                 let id: i64 = row.get("id")?;
//!                 let email: Option<String> = row.get("email")?;
//!                 updates.push(params![email.map(|e| e.trim().to_lowercase()), id]);
//!             }
//!             done += db::execute_many(update, &updates)?;
//!             wasmig_guest::progress(done, u64::try_from(total).ok());
//!         }
//!         info!("normalised {done} of {total} addresses");
//!         Ok(())
//!     }
//!
//!     fn downgrade() -> Result<()> {
//!         db::batch("ALTER TABLE customers DROP COLUMN email_norm")?;
//!         Ok(())
//!     }
//! }
//!
//! wasmig_guest::migration!(NormaliseEmails);
//! ```
//!
//! # Errors
//!
//! [`Result`] and `?` carry SQL errors, decoding errors, messages ([`bail!`], [`ensure!`],
//! `Err("…")?`) and the standard library's parse errors; any other error converts with
//! `.map_err(Error::msg)?`. An `Err` returned
//! from `upgrade` or `downgrade` fails the migration with the error's message and wasmig rolls
//! everything back.
//!
//! An SQL error comes back as a value, but on PostgreSQL it also aborts the transaction, so
//! wasmig fails the migration even if the guest ignores the error and returns `Ok`. To try a
//! statement that may fail and carry on, run it inside [`db::savepoint`].
//!
//! # How a migration is built
//!
//! `wasmig build` (and `wasmig up`) compiles the crate for `wasm32-unknown-unknown` and turns
//! the core module into a component. The bindings in [`bindings`] are generated ahead of time
//! and checked in, so the only dependency is the small `wit-bindgen` runtime crate: no proc
//! macros, and a cold build takes seconds. That target has no WASI, so the component imports
//! nothing but wasmig's interfaces (`wasmig:migration/sql`, `log`, `batch`): no files, no network, no
//! clock, by construction.
//!
//! The flip side: **`println!` and `eprintln!` output is lost** on `wasm32-unknown-unknown`,
//! and `std::time::SystemTime::now()` panics. Log with [`trace!`], [`debug!`], [`info!`],
//! [`warn!`] and [`error!`] instead; wasmig shows those lines prefixed with the revision. A
//! panic aborts the migration (as a trap) and rolls it back.
//!
//! The crate also compiles natively, so the pure parts of a migration (conversions,
//! transformations) can be unit-tested with `cargo test`; calling into [`db`] or the log
//! outside wasmig panics.

/// The raw bindings generated from `wit/migration.wit` by wit-bindgen, checked in; the test
/// `tests/bindings_fresh.rs` fails when they no longer match the WIT and regenerates them
/// with `WASMIG_BLESS=1`. Prefer the API at the crate root; this module is public
/// so that [`migration!`] can export a migration through it.
#[rustfmt::skip]
#[allow(missing_docs, unreachable_pub, unused_lifetimes, clippy::all, clippy::pedantic)]
pub mod bindings;

/// The interfaces of the WIT version this SDK targets (`wit/migration.wit`, 0.4.0).
use bindings::wasmig::migration0_4_0 as wit;

pub mod batch;
mod columns;
pub mod db;
mod error;
pub mod log;
mod row;
mod text_types;
mod value;

pub use columns::{ColumnData, ColumnValues, Columns, PackedBytes, PackedText, TextColumn, Texts};
pub use error::{Error, Result};
pub use log::progress;
pub use row::{ColumnIndex, Row, Rows};
pub use text_types::{Date, Json, Jsonb, Numeric, Time, Timestamp, Timestamptz, Uuid};
pub use value::{ArrayElement, FromSql, ToSql};
pub use wit::types::{ArrayValue, Column, SqlDialect as Dialect, SqlError, Value};

impl Dialect {
    /// The database's name as people write it: `PostgreSQL`, `SQLite` or `MySQL` (MariaDB
    /// included).
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Postgres => "PostgreSQL",
            Dialect::Sqlite => "SQLite",
            Dialect::Mysql => "MySQL",
        }
    }
}

impl core::fmt::Display for Dialect {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// A migration: what `upgrade` applies, `downgrade` reverts.
///
/// Both run inside the transaction wasmig opened for the step, so an `Err` (or a panic) undoes
/// everything the function did. Export the implementing type with [`migration!`].
pub trait Migration {
    /// Applies the migration.
    ///
    /// # Errors
    ///
    /// Any error fails the step; its message (with the SQL error's code, detail and hint, if
    /// it is one) is what wasmig reports.
    fn upgrade() -> Result<()>;

    /// Reverts what [`Migration::upgrade`] did.
    ///
    /// # Errors
    ///
    /// As for [`Migration::upgrade`].
    fn downgrade() -> Result<()>;
}

/// Exports a type implementing [`Migration`] as the component's `upgrade` and `downgrade`.
///
/// Use it once per migration crate, at the top level:
///
/// ```no_run
/// struct AddIndex;
///
/// impl wasmig_guest::Migration for AddIndex {
///     fn upgrade() -> wasmig_guest::Result<()> {
///         wasmig_guest::db::batch("CREATE INDEX orders_placed_at ON orders (placed_at)")?;
///         Ok(())
///     }
///
///     fn downgrade() -> wasmig_guest::Result<()> {
///         wasmig_guest::db::batch("DROP INDEX orders_placed_at")?;
///         Ok(())
///     }
/// }
///
/// wasmig_guest::migration!(AddIndex);
/// ```
#[macro_export]
macro_rules! migration {
    ($migration:ty) => {
        const _: () = {
            // The generated `export!` takes an identifier, not a path or generic type.
            type WasmigGuestExports = $crate::Exports<$migration>;
    $crate::bindings::export!(WasmigGuestExports with_types_in $crate::bindings);
        };
    };
}

/// Adapts a [`Migration`] to the generated `Guest` trait; used by [`migration!`].
#[doc(hidden)]
pub struct Exports<M>(core::marker::PhantomData<M>);

impl<M: Migration> bindings::Guest for Exports<M> {
    fn upgrade() -> core::result::Result<(), String> {
        M::upgrade().map_err(|e| e.to_string())
    }

    fn downgrade() -> core::result::Result<(), String> {
        M::downgrade().map_err(|e| e.to_string())
    }
}

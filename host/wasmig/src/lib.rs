//! wasmig: a database migration runner whose migrations are plain SQL or sandboxed
//! WebAssembly components.
//!
//! The library behind the `wasmig` command, and what an application embeds to migrate its
//! database at start-up: [`Migrator`] runs each command on one project and one database
//! and returns a typed report; it prints nothing (it emits `tracing` events).
//!
//! - [`migrator`]: the commands, the lock scope and the connection's lifetime;
//! - [`config`]: the project and `wasmig.toml`; [`revision`]: revisions on disk and stored,
//!   [`revision::RevisionSet`];
//! - [`graph`] (re-exported from `wasmig-plan`): pure planning; [`runner`]: executing a
//!   plan, one transaction per step;
//! - [`integrity`]: applied revisions against their recorded checksums, `rehash`;
//! - [`db`] (`wasmig-db`): PostgreSQL and SQLite; [`sandbox`] (`wasmig-sandbox`): wasmtime,
//!   limits, cache; [`bindings`] (`wasmig-contract`): the WIT contract;
//! - [`artifact`]: building Rust revisions; [`toolchain`]: Python, JavaScript and C ones;
//! - [`scaffold`]: `init` and `revision`; [`import`]: another tool's migrations as
//!   revisions; [`error`]: typed errors callers branch on;
//! - [`untrusted`], [`jail`], [`confined`]: untrusted mode, the build jail, and file access
//!   confined to the project.
//!
//! Not here: argument parsing, rendering and exit codes (the `wasmig-cli` crate).

pub mod artifact;
pub mod ceilings;
pub use wasmig_contract as bindings;
pub mod config;
pub mod confined;
pub use wasmig_db as db;
pub mod error;
pub mod fleet;
pub use wasmig_plan::graph;
pub mod history;
pub mod import;
pub mod integrity;
pub mod jail;
pub mod lint;
pub mod memo;
pub mod migrator;
pub use wasmig_sandbox::progress;
pub mod revision;
pub mod runner;
pub use wasmig_sandbox as sandbox;
pub mod scaffold;
pub mod toolchain;
pub mod untrusted;

pub use migrator::{Migrator, Options};

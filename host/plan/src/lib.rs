//! wasmig's pure planning: what a migration run will do, computed from plain data.
//!
//! - [`capability`]: what a revision's SQL may do (`capabilities` in a manifest);
//! - [`manifest`]: a revision's `migration.toml`, revision ids, the pinned checksum;
//! - [`graph`]: Alembic's revision graph, targets, and the ordered [`graph::Step`]s of an
//!   upgrade, a downgrade or a stamp;
//! - [`import`]: another tool's migration directory and history table, read by that tool's
//!   rules (`wasmig import`);
//! - [`error`]: [`ConfigError`] and [`GraphError`], which callers branch on.
//!
//! Nothing here touches a database, a file system, wasm or an async runtime: the crate
//! depends on serde, toml, sha2 and thiserror only, so its tests (the planner's among them,
//! replaying every case Alembic itself answered) build and run in seconds:
//! `cargo test -p wasmig-plan`.

pub mod capability;
pub mod error;
pub mod graph;
pub mod import;
pub mod manifest;

pub use capability::{Capabilities, Capability};
pub use error::{ConfigError, GraphError, NextStep};

//! wasmig: a database migration runner whose migrations are plain SQL or sandboxed
//! WebAssembly components.
//!
//! The binary (`main.rs`) only parses arguments and maps errors to exit codes; everything
//! else lives here, one domain concept per module:
//!
//! - [`config`]: the project and `wasmig.toml`; [`revision`]: manifests and artifacts;
//! - [`graph`]: pure planning; [`runner`]: executing a plan, one transaction per step;
//! - [`integrity`]: applied revisions against their recorded checksums, `rehash`;
//! - [`db`]: PostgreSQL and SQLite behind one trait; [`sandbox`]: wasmtime, limits, cache;
//! - [`artifact`]: building Rust revisions; [`toolchain`]: Python, JavaScript and C ones;
//! - [`scaffold`]: `init` and `revision`;
//! - [`error`] and [`exit`]: typed errors and the exit-code contract.

pub mod artifact;
pub use wasmig_contract as bindings;
pub mod config;
pub use wasmig_db as db;
pub mod error;
pub use wasmig_plan::graph;
pub mod history;
pub mod integrity;
pub use wasmig_sandbox::progress;
pub mod revision;
pub mod runner;
pub use wasmig_sandbox as sandbox;
pub mod scaffold;
pub mod toolchain;

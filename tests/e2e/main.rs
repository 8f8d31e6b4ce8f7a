//! wasmig's end-to-end tests: the real binary against the real PostgreSQL and SQLite files,
//! with guest components built from source (`tests/guests/`, and `tests/languages/` for
//! Python, JavaScript and C) or written inline in WAT.
//!
//! One test binary, a module per topic. Every test makes its own project and database.

mod artifacts;
mod batches;
mod components;
mod crash;
mod embedding;
mod graph;
mod guests;
mod integrity;
mod languages;
mod lock;
mod scaffold;
mod sql;
mod support;
mod transaction_none;
mod transactions;

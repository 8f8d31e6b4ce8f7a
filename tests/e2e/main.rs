//! wasmig's end-to-end tests: the real binary against the real PostgreSQL and SQLite files,
//! with guest components built from source (`tests/guests/`, and `tests/languages/` for
//! Python, JavaScript and C) or written inline in WAT.
//!
//! One test binary, a module per topic. Every test makes its own project and database.

mod artifacts;
mod batches;
mod components;
mod crash;
mod dry_run;
mod embedding;
mod engines;
mod fleet;
mod graph;
mod guests;
mod hostile;
mod import;
mod import_corpus;
mod integrity;
mod languages;
mod lease;
mod lint;
mod lint_corpus;
mod lock;
mod mysql;
mod offline;
mod output;
mod portable;
mod retries;
mod scaffold;
mod snap;
mod sql;
mod stairway;
mod support;
mod throttle;
mod test_guest {
    //! Every test guest's component, built by the `wasmig-test-guests` crate: a constant per
    //! guest, so a test naming a missing guest does not compile, and a guest no test uses is
    //! an unused constant (refused by `clippy -D warnings`).
    macro_rules! guest_const {
        ($name:ident, $path:literal) => {
            pub(crate) const $name: &str = $path;
        };
    }
    wasmig_test_guests::foreach_guest!(guest_const);
}
mod transaction_none;
mod transactions;
mod untrusted;
mod workers;

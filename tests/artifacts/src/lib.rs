//! The end-to-end tests' guest components, built from source by `build.rs` (the crates of
//! `tests/guests/`) before the tests compile, and named by a macro so that each test refers
//! to a component by a constant.
//!
//! [`foreach_guest!`] calls a macro once per guest with its name and the path of its built
//! component. The end-to-end tests turn each into a private constant: a test naming a guest
//! that does not exist fails to compile, and a guest no test uses is an unused constant,
//! which `clippy -D warnings` refuses. (The shape is wasmtime's `test-programs/artifacts`.)
//!
//! Not here: the guests themselves (`tests/guests/`), the WAT components written inline in
//! the tests.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

//! Logging and progress through the host: the `log` interface of the WIT, and the
//! [`trace!`](crate::trace), [`debug!`](crate::debug), [`info!`](crate::info),
//! [`warn!`](crate::warn) and [`error!`](crate::error) macros over it.
//!
//! wasmig shows each line prefixed with the revision and filters by its own `LOG_LEVEL`. A
//! migration built for `wasm32-unknown-unknown` has no stdout: `println!` output is lost, so
//! log with these instead. Outside wasmig (a native unit test) these functions panic.

pub use crate::wit::log::Level;

/// Writes one message to wasmig's log; the macros call this with `format!`'s result.
pub fn write(level: Level, message: &str) {
    crate::wit::log::log(level, message);
}

/// Reports progress: `done` units of work so far, out of `total` if known. wasmig shows a
/// progress bar on a terminal and periodic log lines otherwise, so call it as often as is
/// convenient (once per chunk, say).
///
/// ```no_run
/// wasmig_guest::progress(5_000, Some(120_000));
/// ```
pub fn progress(done: u64, total: Option<u64>) {
    crate::wit::log::progress(done, total);
}

/// Logs a message at `trace` level, formatted like `format!`.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => {
        $crate::log::write($crate::log::Level::Trace, &::std::format!($($arg)+))
    };
}

/// Logs a message at `debug` level, formatted like `format!`.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => {
        $crate::log::write($crate::log::Level::Debug, &::std::format!($($arg)+))
    };
}

/// Logs a message at `info` level, formatted like `format!`.
///
/// ```no_run
/// # let (n, table) = (3, "users");
/// wasmig_guest::info!("backfilled {n} rows of {table}");
/// ```
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => {
        $crate::log::write($crate::log::Level::Info, &::std::format!($($arg)+))
    };
}

/// Logs a message at `warn` level, formatted like `format!`.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => {
        $crate::log::write($crate::log::Level::Warn, &::std::format!($($arg)+))
    };
}

/// Logs a message at `error` level, formatted like `format!`. It does not fail the
/// migration: return an `Err` for that.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => {
        $crate::log::write($crate::log::Level::Error, &::std::format!($($arg)+))
    };
}

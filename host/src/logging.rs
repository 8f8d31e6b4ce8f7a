//! wasmig's own log: levelled lines on stderr, filtered by `LOG_LEVEL` / `-v` / `-q`.
//!
//! Deliberately tiny (no subscriber framework): one global level and a macro per level.
//! Guest output (log calls, captured stdout/stderr) goes through here prefixed with the
//! revision. Machine-readable output (`--json`) goes to stdout and never through here.

use std::sync::atomic::{AtomicU8, Ordering};

/// Severity, most verbose first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Very detailed.
    Trace = 0,
    /// Debugging detail.
    Debug = 1,
    /// Normal progress.
    Info = 2,
    /// Suspicious but not fatal.
    Warn = 3,
    /// Failures.
    Error = 4,
    /// Nothing at all.
    Off = 5,
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

impl Level {
    /// Parses `trace|debug|info|warn|error|off` (case-insensitive).
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "trace" => Level::Trace,
            "debug" => Level::Debug,
            "info" => Level::Info,
            "warn" | "warning" => Level::Warn,
            "error" => Level::Error,
            "off" | "none" => Level::Off,
            _ => return None,
        })
    }

    fn from_u8(v: u8) -> Level {
        match v {
            0 => Level::Trace,
            1 => Level::Debug,
            2 => Level::Info,
            3 => Level::Warn,
            4 => Level::Error,
            _ => Level::Off,
        }
    }

    /// The label printed before a message.
    pub fn label(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Off => "",
        }
    }
}

/// Sets the global level.
pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// The global level.
pub fn level() -> Level {
    Level::from_u8(LEVEL.load(Ordering::Relaxed))
}

/// Whether a message at `level` would be printed.
pub fn enabled(level: Level) -> bool {
    level != Level::Off && level >= self::level()
}

/// Prints one message if its level is enabled. Use the macros.
pub fn emit(level: Level, args: std::fmt::Arguments<'_>) {
    if enabled(level) {
        crate::progress::suspend(|| {
            if level == Level::Info {
                eprintln!("{args}");
            } else {
                eprintln!("{}: {args}", level.label());
            }
        });
    }
}

/// Logs at info level.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::logging::emit($crate::logging::Level::Info, format_args!($($arg)*)) };
}
/// Logs at warn level.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::logging::emit($crate::logging::Level::Warn, format_args!($($arg)*)) };
}
/// Logs at debug level.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::logging::emit($crate::logging::Level::Debug, format_args!($($arg)*)) };
}

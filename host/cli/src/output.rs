//! Where a command's result goes: stdout, one line at a time ([`out!`]).
//!
//! Logs and progress go to stderr through `terminal`; with `--json` a command prints exactly
//! one JSON document here.

/// Prints one line of a command's result on stdout. A reader that went away (`wasmig heads
/// | head -1`, a closed pipe) loses the rest of the output, but never turns a finished run
/// into a panic: the work is done and the exit code must say how it went.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::print_line(format_args!($($arg)*))
    };
}
pub(crate) use out;

/// The body of [`out!`].
pub(crate) fn print_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = writeln!(stdout, "{args}")
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        tracing::warn!("cannot write the result to stdout: {e}");
    }
}

/// Heads as people read them: `base` for none.
pub(crate) fn heads(h: &[String]) -> String {
    if h.is_empty() {
        "base".to_owned()
    } else {
        h.join(", ")
    }
}

//! The `wasmig` binary: parse arguments, run the library, map the error to an exit code.

use std::process::ExitCode;

use clap::Parser;

mod args;
mod commands;
mod exit;
mod hints;
mod output;
mod terminal;

fn main() -> ExitCode {
    fix_malloc_mmap_threshold();
    let cli = args::Cli::parse();
    // One thread: a run is a conversation with one database, one message at a time, and
    // each message passes the relay's task; on one thread none of them waits for another
    // thread to wake (8-9% of a run of 200-300 small revisions, BENCHMARKS.md). What could
    // hold the thread runs elsewhere: reading and compiling artifacts and builds under the
    // lock on blocking threads, compiling in the background on threads of its own, and a
    // guest computing hands the thread back at every epoch tick. A fleet keeps the workers:
    // its targets' runners are on blocking threads, and the relays of all of them would
    // share the one thread.
    let mut builder = if cli.runs_a_fleet() {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::INTERNAL);
        }
    };
    // A panic is a wasmig bug. It unwinds through the run, dropping the database's control
    // connection (on which PostgreSQL's migration lock is held) or the lock file (which
    // releases the lock) and any open transaction (rolled back);
    // it must exit with the documented internal-error code, not Rust's 101.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(commands::run(cli))
    }));
    // A fleet interrupted twice leaves targets under way on blocking threads: exit without
    // waiting for them (their step in flight rolls back as the connections close).
    runtime.shutdown_background();
    let Ok(result) = result else {
        eprintln!(
            "error: internal error: wasmig panicked (a bug; please report it with the message above); steps committed before it stay applied, the one in flight did not commit"
        );
        return ExitCode::from(exit::INTERNAL);
    };
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(err) => {
            let causes = wasmig::db::shown_causes(&err);
            let mut causes = causes.iter();
            if let Some(first) = causes.next() {
                eprintln!("error: {}", terminal::visible(first));
            }
            for cause in causes {
                eprintln!("  caused by: {}", terminal::visible(cause));
            }
            if let Some(hint) = hints::hint_for(&err) {
                eprintln!("hint: {}", terminal::visible(&hint));
            }
            if let Some(m) = err
                .chain()
                .find_map(|c| c.downcast_ref::<wasmig::error::MigrationError>())
                && !m.completed.is_empty()
            {
                eprintln!(
                    "note: applied before the failure, and kept: {}",
                    m.completed.join(", ")
                );
            }
            ExitCode::from(exit::code_for(&err))
        }
    }
}

/// Gives every allocation of 4 MiB or more its own mapping, returned to the system when it
/// is freed. glibc's default threshold starts at 128 KiB but rises to the size of each such
/// mapping freed (up to 32 MiB): once a component's bytes (18 MB for a Python one) are freed,
/// its later copies (the database's copy of it, the statement binding it) come from the heap,
/// which keeps them resident after they are freed. Measured on the Python guest's 1M-row
/// transform (issue 18): 33 MiB less resident through the run. A `MALLOC_MMAP_THRESHOLD_`
/// in the environment still wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn fix_malloc_mmap_threshold() {
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: mallopt only sets a parameter of the allocator; no other thread exists yet.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn fix_malloc_mmap_threshold() {}

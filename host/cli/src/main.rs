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
    let cli = args::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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
            eprintln!("error: {}", terminal::visible(&err.to_string()));
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {}", terminal::visible(&cause.to_string()));
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

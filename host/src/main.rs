//! The `wasmig` binary: parse arguments, run the library, map the error to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = wasmig::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(wasmig::exit::INTERNAL);
        }
    };
    match runtime.block_on(wasmig::cli::run(cli)) {
        Ok(()) => ExitCode::from(wasmig::exit::OK),
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
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
            ExitCode::from(wasmig::exit::code_for(&err))
        }
    }
}

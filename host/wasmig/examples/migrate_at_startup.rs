//! An application that migrates its own database when it starts, with the wasmig library:
//! the counterpart of `sqlx::migrate!("./migrations").run(&pool)` or refinery's
//! `Runner::run`. SQL revisions and sandboxed components alike are applied before the
//! application serves anything; a failed migration stops the start-up with wasmig's
//! message (which names the revision) and leaves the database as the failed step found it.
//!
//! ```sh
//! cargo run -p wasmig --example migrate_at_startup -- migrations                   # SQLite
//! cargo run -p wasmig --example migrate_at_startup -- migrations postgres://…/app  # PostgreSQL
//! ```
//!
//! wasmig prints nothing itself: it emits `tracing` events, which an application routes to
//! its own logs by installing a subscriber (none here, so they are dropped).

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "migrations".to_owned());
    match migrate(&dir, args.next()).await {
        Ok(()) => {
            println!("application started");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot start: migrating the database failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Applies every pending revision of the project in `dir` to `url` (default: the project's
/// own `DATABASE_URL`, `wasmig.toml`, or its embedded SQLite file).
async fn migrate(dir: &str, url: Option<String>) -> anyhow::Result<()> {
    let mut migrator = wasmig::Migrator::open(dir)?;
    if let Some(url) = url {
        migrator = migrator.with_database_url(url);
    }
    let report = migrator.up(None).await?;
    for step in &report.steps {
        println!("applied {} in {} ms", step.revision, step.duration_ms);
    }
    if report.steps.is_empty() {
        println!("the database is up to date");
    }
    let heads = migrator.heads().await?;
    println!("database at {}", heads.join(", "));
    Ok(())
}

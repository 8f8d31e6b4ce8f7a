//! One module per command: each calls the library ([`wasmig::Migrator`] for anything that
//! touches the database) and renders its report, as text or as one JSON document.
//!
//! Not here: the grammar (`args`), exit codes (`exit`), the log's rendering (`terminal`).

mod build;
mod check;
mod current;
mod fleet;
mod heads;
mod history;
mod import;
mod init;
mod lint;
mod migrate;
mod rehash;
mod resolve;
mod revision;
mod show;
mod stamp;
mod test;

use std::path::PathBuf;
use std::time::Duration;

use tracing::level_filters::LevelFilter;
use wasmig::config::Project;
use wasmig::{Migrator, Options};

use crate::args::{Cli, Command, Global};
use crate::terminal;

/// Runs a parsed command line.
///
/// # Errors
/// Any failure, typed where `exit::code_for` maps it to a documented code.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<()> {
    let g = &cli.global;
    terminal::install(!g.json);
    set_log_level(g, std::env::var("LOG_LEVEL").ok());
    if let Command::Init { dir } = &cli.command {
        return init::run(g, dir.as_deref());
    }
    let start = g.project.clone().unwrap_or_else(|| PathBuf::from("."));
    let project = Project::discover(&start)?;
    // The project's `.env` may set LOG_LEVEL; the real environment wins.
    if let Some(text) = project.dot_env("LOG_LEVEL")
        && std::env::var_os("LOG_LEVEL").is_none()
    {
        set_log_level(g, Some(text.to_owned()));
    }
    let migrator = Migrator::new(project).with_options(Options {
        database_url: g.database_url.clone(),
        lock_timeout: Duration::from_secs(g.lock_timeout),
        untrusted: g.untrusted,
        ..Options::default()
    });
    match &cli.command {
        Command::Init { .. } => unreachable!("handled before the project is loaded"),
        Command::Revision { .. } | Command::Merge { .. } => {
            revision::run(&migrator, g, &cli.command)
        }
        Command::Build => build::run(&migrator),
        Command::Up(args) => {
            migrate::run(migrator, g, args, wasmig::graph::Direction::Upgrade).await
        }
        Command::Down(args) => {
            migrate::run(migrator, g, args, wasmig::graph::Direction::Downgrade).await
        }
        Command::Current(args) => match fleet::targets(&migrator, &args.source).await? {
            Some(targets) => fleet::current(&migrator, g, args, &targets).await,
            None => current::run(&migrator, g).await,
        },
        Command::History {
            log,
            rev_range,
            indicate_current,
        } => history::run(&migrator, g, *log, rev_range.as_deref(), *indicate_current).await,
        Command::Show { revision } => show::run(&migrator, g, revision).await,
        Command::Heads {
            resolve_dependencies,
        } => heads::heads(&migrator, g, *resolve_dependencies),
        Command::Branches => heads::branches(&migrator, g),
        Command::Stamp { revisions, purge } => stamp::run(&migrator, g, revisions, *purge).await,
        Command::Check {
            single_head,
            allow_modified,
        } => check::run(migrator, g, *single_head, *allow_modified).await,
        Command::Import {
            from,
            source,
            adopt,
            dry_run,
            x_multi_statement,
        } => {
            let options = wasmig::import::ToolOptions {
                multi_statement: *x_multi_statement,
            };
            import::run(&migrator, g, *from, source, options, *adopt, *dry_run).await
        }
        Command::Test {
            single_head,
            budget_secs,
            keep,
            scratch_url,
            no_build,
            no_cache,
        } => {
            let options = wasmig::migrator::StairwayOptions {
                single_head: *single_head,
                budget: budget_secs.map(Duration::from_secs),
                keep: *keep,
                scratch_url: scratch_url.clone(),
            };
            test::run(migrator, g, &options, !*no_build, !*no_cache).await
        }
        Command::Lint {
            revisions,
            down,
            dialect,
            format,
            dry_run,
            batches,
        } => {
            let args = lint::LintArgs {
                selected: revisions,
                down: *down,
                dialect: *dialect,
                format: *format,
                dry_run: dry_run.then_some(batches.unwrap_or(1)),
            };
            lint::run(migrator, g, args).await
        }
        Command::Rehash { revisions } => rehash::run(&migrator, g, revisions).await,
        Command::Resolve { revision, state } => resolve::run(&migrator, g, revision, *state).await,
    }
}

/// Ctrl-C and SIGTERM, one `()` each, from now on (they no longer end the process: the
/// command that asked decides). If the handlers cannot be installed, nothing ever arrives.
pub(crate) fn signals() -> tokio::sync::mpsc::UnboundedReceiver<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    tokio::spawn(async move {
        loop {
            let got = tokio::select! {
                Some(()) = async { term.as_mut()?.recv().await } => true,
                Some(()) = async { int.as_mut()?.recv().await } => true,
                else => false,
            };
            if !got || tx.send(()).is_err() {
                break;
            }
        }
    });
    rx
}

/// Sets wasmig's log level from `-q`, `-v` and the value of `LOG_LEVEL`.
fn set_log_level(g: &Global, log_level: Option<String>) {
    let mut bad_level = None;
    let level = if g.quiet {
        LevelFilter::ERROR
    } else {
        match g.verbose {
            0 => match log_level {
                Some(text) => terminal::parse_level(&text).unwrap_or_else(|| {
                    bad_level = Some(text);
                    LevelFilter::INFO
                }),
                None => LevelFilter::INFO,
            },
            1 => LevelFilter::DEBUG,
            _ => LevelFilter::TRACE,
        }
    };
    terminal::set_level(level);
    if let Some(text) = bad_level {
        tracing::warn!(
            "LOG_LEVEL={text} is not a level; use trace, debug, info, warn or error (using info)"
        );
    }
}

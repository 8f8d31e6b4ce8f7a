//! The command line: argument definitions and one function per command.
//!
//! Commands use Alembic's names (`upgrade`/`downgrade` are aliases of `up`/`down`). Read
//! commands take `--json` and then print exactly one JSON document on stdout; human output
//! and logs go to stderr.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::config::Project;
use crate::db::{self, Database};
use crate::graph::Graph;
use crate::logging::{self, Level};
use crate::revision::{self, Kind, Revision};
use crate::runner::{self, RunOptions};
use crate::scaffold;

/// wasmig: database migrations in SQL or sandboxed WebAssembly.
#[derive(Debug, Parser)]
#[command(name = "wasmig", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Global {
    /// The project directory (default: the nearest directory with wasmig.toml).
    #[arg(short = 'C', long = "project", global = true, value_name = "DIR")]
    project: Option<PathBuf>,
    /// The database URL (overrides DATABASE_URL and wasmig.toml).
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// More log output (-v debug, -vv trace); overrides LOG_LEVEL.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a project: wasmig.toml, a versions directory and a Cargo workspace.
    Init {
        /// Where to create it (default: the current directory).
        dir: Option<PathBuf>,
    },
    /// Create a revision on top of the current head.
    #[command(visible_aliases = ["new", "create"])]
    Revision {
        /// What the revision does.
        #[arg(short, long)]
        message: String,
        /// How it is written.
        #[arg(long, value_enum, default_value_t = Kind::Sql)]
        kind: Kind,
        /// Use this id instead of a random one.
        #[arg(long)]
        rev_id: Option<String>,
        /// For --kind wasm: the prebuilt component to copy into the revision.
        #[arg(long, value_name = "FILE")]
        component: Option<PathBuf>,
    },
    /// Build every Rust revision into a component.
    Build,
    /// Apply revisions up to TARGET (default: head).
    #[command(visible_alias = "upgrade")]
    Up(RunArgs),
    /// Revert revisions down to TARGET (default: one step back, -1).
    #[command(visible_alias = "downgrade")]
    Down(RunArgs),
    /// Show the current revision and what is pending.
    #[command(visible_alias = "status")]
    Current,
    /// List the revisions, and the applied/reverted log with --log.
    History {
        /// Show the database's history log instead of the revision list.
        #[arg(long)]
        log: bool,
    },
    /// Show one revision.
    Show {
        /// A revision id or unique prefix.
        revision: String,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Where to go: head, base, an id or prefix, +N, -N, REV+N, REV-N.
    #[arg(allow_hyphen_values = true)]
    target: Option<String>,
    /// Do not build stale Rust revisions first.
    #[arg(long)]
    no_build: bool,
    /// Compile components without reading or writing the compile cache.
    #[arg(long)]
    no_cache: bool,
    /// Print the steps without running them.
    #[arg(long)]
    plan: bool,
}

/// Runs a parsed command line.
///
/// # Errors
/// Any failure, typed where `exit::code_for` maps it to a documented code.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let g = &cli.global;
    set_log_level(g, std::env::var("LOG_LEVEL").ok());

    match &cli.command {
        Command::Init { dir } => {
            let dir = dir
                .clone()
                .or_else(|| g.project.clone())
                .unwrap_or_else(|| PathBuf::from("."));
            let config = scaffold::init(&dir)?;
            crate::info!(
                "created {}; next: wasmig revision -m \"create a table\"",
                config.display()
            );
            Ok(())
        }
        command => {
            let start = g.project.clone().unwrap_or_else(|| PathBuf::from("."));
            let project = Project::discover(&start)?;
            // The project's `.env` may set LOG_LEVEL; the real environment wins.
            if let Some(text) = project.dot_env("LOG_LEVEL")
                && std::env::var_os("LOG_LEVEL").is_none()
            {
                set_log_level(g, Some(text.to_owned()));
            }
            run_in_project(&project, g, command).await
        }
    }
}

/// Sets wasmig's log level from `-q`, `-v` and the value of `LOG_LEVEL`.
fn set_log_level(g: &Global, log_level: Option<String>) {
    let mut bad_level = None;
    let level = if g.quiet {
        Level::Error
    } else {
        match g.verbose {
            0 => match log_level {
                Some(text) => Level::parse(&text).unwrap_or_else(|| {
                    bad_level = Some(text);
                    Level::Info
                }),
                None => Level::Info,
            },
            1 => Level::Debug,
            _ => Level::Trace,
        }
    };
    logging::set_level(level);
    if let Some(text) = bad_level {
        crate::warn!(
            "LOG_LEVEL={text} is not a level; use trace, debug, info, warn or error (using info)"
        );
    }
}

async fn run_in_project(project: &Project, g: &Global, command: &Command) -> anyhow::Result<()> {
    match command {
        Command::Init { .. } => unreachable!("handled before the project is loaded"),
        Command::Revision {
            message,
            kind,
            rev_id,
            component,
        } => {
            let dir = scaffold::new_revision(
                project,
                &scaffold::NewRevision {
                    message,
                    kind: *kind,
                    rev_id: rev_id.as_deref(),
                    component: component.as_deref(),
                },
            )?;
            crate::info!("created {}", dir.display());
            if g.json {
                println!("{}", json!({ "directory": dir }));
            }
            Ok(())
        }
        Command::Build => {
            let revisions = revision::load_all(&project.versions_dir())?;
            let changed = crate::artifact::build(project, &revisions)?;
            crate::info!("built; {} component(s) changed", changed.len());
            Ok(())
        }
        Command::Up(args) | Command::Down(args) => {
            let upgrade = matches!(command, Command::Up(_));
            migrate(project, g, args, upgrade).await
        }
        Command::Current => {
            let (revisions, graph) = load_graph(project)?;
            let db = connect(project, g).await?;
            let heads = db.heads().await?;
            db.close().await;
            let pending = graph.pending(&heads)?;
            if g.json {
                let out = json!({
                    "current": heads,
                    "head": graph.head(),
                    "pending": pending,
                    "dialect": db.dialect().name(),
                });
                println!("{out}");
            } else {
                let current = heads
                    .first()
                    .map(|h| describe(&revisions, h))
                    .unwrap_or_else(|| "base (nothing applied)".into());
                println!("current: {current}");
                if pending.is_empty() {
                    println!("up to date");
                } else {
                    println!("pending ({}):", pending.len());
                    for id in pending {
                        println!("  {}", describe(&revisions, id));
                    }
                }
            }
            Ok(())
        }
        Command::History { log } => {
            let (revisions, graph) = load_graph(project)?;
            if *log {
                let db = connect(project, g).await?;
                let history = db.history().await?;
                db.close().await;
                if g.json {
                    println!("{}", json!({ "history": history }));
                } else {
                    for h in &history {
                        println!(
                            "{} {:<9} {} {} ms  {}",
                            h.started_at
                                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                            h.direction,
                            h.revision,
                            h.duration_ms,
                            &h.checksum[..12.min(h.checksum.len())]
                        );
                    }
                }
                return Ok(());
            }
            let list: Vec<&Revision> = graph
                .chain()
                .iter()
                .rev()
                .map(|id| {
                    revisions
                        .iter()
                        .find(|r| r.id() == id)
                        .expect("graph ids are revisions")
                })
                .collect();
            if g.json {
                let out: Vec<_> = list.iter().map(|r| revision_json(r)).collect();
                println!("{}", json!({ "revisions": out }));
            } else {
                for (i, r) in list.iter().enumerate() {
                    let down = r.manifest.down_revisions().join(", ");
                    let down = if down.is_empty() {
                        "<base>".to_owned()
                    } else {
                        down
                    };
                    let head = if i == 0 { " (head)" } else { "" };
                    println!(
                        "{down} -> {}{head}, {} [{}]",
                        r.id(),
                        r.manifest.message,
                        kind_name(r.manifest.kind)
                    );
                }
            }
            Ok(())
        }
        Command::Show { revision: target } => {
            let (revisions, graph) = load_graph(project)?;
            let id = graph.resolve(target)?;
            let r = revisions
                .iter()
                .find(|r| r.id() == id)
                .expect("resolved ids are revisions");
            if g.json {
                println!("{}", revision_json(r));
            } else {
                println!("Revision: {}", r.id());
                println!(
                    "Down revision(s): {}",
                    r.manifest.down_revisions().join(", ")
                );
                println!("Message: {}", r.manifest.message);
                println!("Created: {}", r.manifest.created);
                println!("Kind: {}", kind_name(r.manifest.kind));
                println!("Directory: {}", r.dir.display());
            }
            Ok(())
        }
    }
}

async fn migrate(
    project: &Project,
    g: &Global,
    args: &RunArgs,
    upgrade: bool,
) -> anyhow::Result<()> {
    let (revisions, graph) = load_graph(project)?;
    let db = connect(project, g).await?;
    let heads = db.heads().await?;
    let steps = if upgrade {
        graph.plan_upgrade(&heads, args.target.as_deref().unwrap_or("head"))?
    } else {
        graph.plan_downgrade(&heads, args.target.as_deref().unwrap_or("-1"))?
    };
    if args.plan {
        db.close().await;
        if g.json {
            println!("{}", json!({ "steps": steps }));
        } else {
            for s in &steps {
                println!("{} {}", s.action.as_str(), s.revision);
            }
        }
        return Ok(());
    }
    if steps.is_empty() {
        db.close().await;
        crate::info!(
            "nothing to do: the database is at {}",
            heads.first().map(String::as_str).unwrap_or("base")
        );
        if g.json {
            println!("{}", json!({ "steps": [] }));
        }
        return Ok(());
    }
    if !args.no_build && runner::needs_build(&revisions, &steps) {
        crate::artifact::build(project, &revisions)?;
    }
    let options = RunOptions {
        progress_bars: !g.json,
        use_cache: !args.no_cache,
    };
    let result = runner::run(project, db.as_ref(), &revisions, &steps, options).await;
    db.close().await;
    let reports = result?;
    let ms: u64 = reports.iter().map(|r| r.duration_ms).sum();
    crate::info!(
        "{} {} revision(s) in {ms} ms",
        if upgrade { "applied" } else { "reverted" },
        reports.len()
    );
    if g.json {
        println!("{}", json!({ "steps": reports }));
    }
    Ok(())
}

fn load_graph(project: &Project) -> anyhow::Result<(Vec<Revision>, Graph)> {
    let revisions = revision::load_all(&project.versions_dir())?;
    let graph = Graph::new(&revision::nodes(&revisions))?;
    Ok((revisions, graph))
}

async fn connect(project: &Project, g: &Global) -> anyhow::Result<Box<dyn Database>> {
    let (url, is_default) = project.database_url(g.database_url.as_deref())?;
    if is_default {
        crate::info!("no database configured: using the embedded SQLite database {url}");
    } else {
        crate::debug!("database: {url}");
    }
    db::connect(&url).await
}

fn describe(revisions: &[Revision], id: &str) -> String {
    match revisions.iter().find(|r| r.id() == id) {
        Some(r) => format!("{id} ({})", r.manifest.message),
        None => id.to_owned(),
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Sql => "sql",
        Kind::Rust => "rust",
        Kind::Wasm => "wasm",
    }
}

fn revision_json(r: &Revision) -> serde_json::Value {
    json!({
        "revision": r.id(),
        "down_revisions": r.manifest.down_revisions(),
        "branch_labels": [],
        "depends_on": [],
        "message": r.manifest.message,
        "created": r.manifest.created,
        "kind": kind_name(r.manifest.kind),
        "directory": r.dir,
    })
}

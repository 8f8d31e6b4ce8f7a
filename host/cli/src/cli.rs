//! The command line: argument definitions and one function per command.
//!
//! Commands use Alembic's names (`upgrade`/`downgrade` are aliases of `up`/`down`). Read
//! commands take `--json` and then print exactly one JSON document on stdout; human output
//! and logs go to stderr.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde_json::json;

use chrono::Utc;

use crate::config::Project;
use crate::db::{self, Database, FailedMark, StepRecord};
use crate::error::{ConfigError, FailedError, GraphError, InProgressError, NotFailed};
use crate::graph::Graph;
use crate::history;
use crate::integrity;
use tracing::level_filters::LevelFilter;

use crate::revision::{self, Kind, Revision};
use crate::runner::{self, RunOptions};
use crate::scaffold;
use crate::terminal;

/// Prints one line of a command's result on stdout. A reader that went away (`wasmig heads
/// | head -1`, a closed pipe) loses the rest of the output, but never turns a finished run
/// into a panic: the work is done and the exit code must say how it went.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::print_line(format_args!($($arg)*))
    };
}

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

/// wasmig: database migrations in SQL or sandboxed WebAssembly.
#[derive(Debug, Parser)]
#[command(name = "wasmig", version, about, long_about = None)]
pub(crate) struct Cli {
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
    /// How long up, down, stamp, rehash and resolve wait for another run's migration lock
    /// on the database (and for a killed run's session still at work) before giving up
    /// (exit 11).
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 60)]
    lock_timeout: u64,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a project: wasmig.toml, a versions directory and a Cargo workspace.
    Init {
        /// Where to create it (default: the current directory).
        dir: Option<PathBuf>,
    },
    /// Create a revision on top of the current head (or --head).
    #[command(visible_aliases = ["new", "create"])]
    Revision {
        /// What the revision does.
        #[arg(short, long)]
        message: String,
        /// How it is written.
        #[arg(long, default_value = "sql", value_parser = kind_parser())]
        kind: Kind,
        /// Use this id instead of a random one.
        #[arg(long)]
        rev_id: Option<String>,
        /// For --kind wasm: the prebuilt component to copy into the revision.
        #[arg(long, value_name = "FILE")]
        component: Option<PathBuf>,
        /// Build on this revision instead of the single head: an id, LABEL@head, `base` to
        /// start a new root, REV-N or -N (below the head) (repeat for several).
        #[arg(long, value_name = "REV", allow_negative_numbers = true)]
        head: Vec<String>,
        /// Allow --head to name a revision that is not a head (starts a new branch).
        #[arg(long)]
        splice: bool,
        /// A branch label for the new revision (repeatable).
        #[arg(long, value_name = "LABEL", value_parser = branch_label)]
        branch_label: Vec<String>,
        /// A revision or branch label that must be applied first (repeatable).
        #[arg(long, value_name = "REV", allow_negative_numbers = true)]
        depends_on: Vec<String>,
    },
    /// Merge several heads with a new revision (`wasmig merge heads -m "merge"`).
    Merge {
        /// The revisions to merge: ids, LABEL@head, or `heads` for all.
        #[arg(required = true, value_name = "REV", allow_negative_numbers = true)]
        revisions: Vec<String>,
        /// What the merge is.
        #[arg(short, long)]
        message: String,
        /// Use this id instead of a random one.
        #[arg(long)]
        rev_id: Option<String>,
        /// A branch label for the merge revision (repeatable).
        #[arg(long, value_name = "LABEL", value_parser = branch_label)]
        branch_label: Vec<String>,
        /// Allow merging revisions that are not heads (starts a new branch from each).
        #[arg(long)]
        splice: bool,
    },
    /// Build every Rust, Python, JavaScript and C revision into a component.
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
    /// List the revisions from the heads down (-v: every field; --log: the database's log).
    History {
        /// Show the database's history log instead of the revision list.
        #[arg(long)]
        log: bool,
        /// Only revisions in START:END (either may be empty; `current` is the database).
        #[arg(
            short = 'r',
            long = "rev-range",
            value_name = "START:END",
            allow_hyphen_values = true
        )]
        rev_range: Option<String>,
        /// Mark the revisions the database is at (connects to it).
        #[arg(short = 'i', long)]
        indicate_current: bool,
    },
    /// Show a revision: an id or prefix, a label, head, LABEL@head, -N (below the head),
    /// REV-N, REV+N; `heads` or LABEL@heads (every head); or `current`, the database's
    /// revision(s).
    Show {
        /// The revision.
        #[arg(allow_hyphen_values = true)]
        revision: String,
    },
    /// List the heads: revisions nothing follows.
    Heads {
        /// Leave out heads that another revision depends on.
        #[arg(long)]
        resolve_dependencies: bool,
    },
    /// List the branch points and the branches from each.
    Branches,
    /// Set the version table to REV... without running any migration.
    Stamp {
        /// Where the database is: ids, LABEL@head, heads, base, -N (below the head), REV-N,
        /// REV+N.
        #[arg(required = true, value_name = "REV", allow_negative_numbers = true)]
        revisions: Vec<String>,
        /// Replace every stored head, even ones this project does not know.
        #[arg(long)]
        purge: bool,
    },
    /// Check the revision graph (and with --single-head, that there is one head), and that
    /// the revisions the database applied are unchanged.
    Check {
        /// Fail when there is more than one head (two changes added revisions in parallel).
        #[arg(long)]
        single_head: bool,
        /// Warn about changed applied revisions instead of failing.
        #[arg(long)]
        allow_modified: bool,
    },
    /// Accept an intended change to applied revisions: record their current checksums.
    Rehash {
        /// The applied revisions whose files were changed on purpose.
        #[arg(required = true, value_name = "REV", allow_negative_numbers = true)]
        revisions: Vec<String>,
    },
    /// Clear a revision's failed mark (a `transaction = "none"` step that stopped part-way)
    /// or the checkpoint of a batched step part-way through, after looking at the database:
    /// say whether its work is in the database or not.
    Resolve {
        /// The revision marked failed or in progress (`wasmig current` lists them).
        #[arg(value_name = "REV")]
        revision: String,
        /// What the database holds now: all of the revision's work (`applied`) or none of
        /// it (`rolled-back`).
        #[arg(long = "as", value_enum, value_name = "STATE")]
        state: Resolution,
    },
}

/// clap's check of `--branch-label`: a bad label is a bad command line (exit 2), told why.
/// `--kind`: the manifest's spellings, listed in `--help` and completed by shells.
fn kind_parser() -> impl clap::builder::TypedValueParser<Value = Kind> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(Kind::ALL.map(Kind::name))
        .map(|s| s.parse::<Kind>().expect("a listed kind"))
}

fn branch_label(label: &str) -> Result<String, String> {
    crate::graph::check_label(label)
        .map(|()| label.to_owned())
        .map_err(str::to_owned)
}

/// What `wasmig resolve` records about a failed revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Resolution {
    /// The revision's upgrade is complete in the database: it is applied.
    Applied,
    /// None of the revision's upgrade is in the database: it is not applied.
    RolledBack,
}

impl Resolution {
    fn as_str(self) -> &'static str {
        match self {
            Resolution::Applied => "applied",
            Resolution::RolledBack => "rolled-back",
        }
    }
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Where to go: head, heads, base, an id or prefix, +N, -N, REV+N, REV-N, LABEL@head,
    /// LABEL@+N, LABEL@-N, LABEL@base.
    #[arg(allow_hyphen_values = true)]
    target: Option<String>,
    /// Do not build stale revisions (Rust, Python, JavaScript, C) first.
    #[arg(long)]
    no_build: bool,
    /// Compile components without reading or writing the compile cache.
    #[arg(long)]
    no_cache: bool,
    /// Print the steps without running them.
    #[arg(long)]
    plan: bool,
    /// Run every step in one transaction: all of them are applied, or none.
    #[arg(long)]
    atomic: bool,
    /// Run even if applied revisions changed since they ran (warns for each).
    #[arg(long)]
    allow_modified: bool,
}

/// Runs a parsed command line.
///
/// # Errors
/// Any failure, typed where `exit::code_for` maps it to a documented code.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<()> {
    let g = &cli.global;
    terminal::install(!g.json);
    set_log_level(g, std::env::var("LOG_LEVEL").ok());

    match &cli.command {
        Command::Init { dir } => {
            let dir = dir
                .clone()
                .or_else(|| g.project.clone())
                .unwrap_or_else(|| PathBuf::from("."));
            let config = scaffold::init(&dir)?;
            tracing::info!(
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

async fn run_in_project(project: &Project, g: &Global, command: &Command) -> anyhow::Result<()> {
    match command {
        Command::Init { .. } => unreachable!("handled before the project is loaded"),
        Command::Revision {
            message,
            kind,
            rev_id,
            component,
            head,
            splice,
            branch_label,
            depends_on,
        } => {
            let dir = scaffold::new_revision(
                project,
                &scaffold::NewRevision {
                    message,
                    kind: *kind,
                    rev_id: rev_id.as_deref(),
                    component: component.as_deref(),
                    heads: head,
                    splice: *splice,
                    merge: false,
                    branch_labels: branch_label,
                    depends_on,
                },
            )?;
            created(&dir, g.json);
            Ok(())
        }
        Command::Merge {
            revisions,
            message,
            rev_id,
            branch_label,
            splice,
        } => {
            let dir = scaffold::new_revision(
                project,
                &scaffold::NewRevision {
                    message,
                    kind: Kind::Sql,
                    rev_id: rev_id.as_deref(),
                    component: None,
                    heads: revisions,
                    splice: *splice,
                    merge: true,
                    branch_labels: branch_label,
                    depends_on: &[],
                },
            )?;
            created(&dir, g.json);
            Ok(())
        }
        Command::Build => {
            let revisions = revision::load_all(&project.versions_dir())?;
            let changed = crate::artifact::build(project, &revisions)?;
            tracing::info!("built; {} component(s) changed", changed.len());
            Ok(())
        }
        Command::Up(args) | Command::Down(args) => {
            let upgrade = matches!(command, Command::Up(_));
            migrate(project, g, args, upgrade).await
        }
        Command::Current => {
            let (revisions, graph) = load_graph(project)?;
            let db = connect(project, g).await?;
            let state = async {
                anyhow::Ok((
                    db.heads().await?,
                    db.failed().await?,
                    db.checkpoints().await?,
                ))
            }
            .await;
            db.close().await;
            let (heads, failed, in_progress) = state?;
            let pending = graph.pending(&heads)?;
            if g.json {
                let graph_heads = graph.heads();
                let out = json!({
                    "current": heads,
                    "heads": graph_heads,
                    "head": (graph_heads.len() == 1).then(|| graph_heads[0]),
                    "pending": pending,
                    "failed": failed,
                    "in_progress": in_progress,
                    "dialect": db.dialect().name(),
                });
                out!("{out}");
            } else {
                if heads.is_empty() {
                    out!("current: base (nothing applied)");
                }
                for h in &heads {
                    out!("current: {}", history::short(&graph, &revisions, h, &[]));
                }
                for f in &failed {
                    out!(
                        "failed: {} ({}; SQLSTATE {}); inspect the database, then `wasmig resolve {} --as applied` or `--as rolled-back`",
                        f.revision,
                        f.error,
                        f.sqlstate.as_deref().unwrap_or("none"),
                        f.revision
                    );
                }
                for c in &in_progress {
                    out!(
                        "in progress: {} (batched {}, {} batch(es) committed since {}, last at {}); `wasmig {}` resumes it",
                        c.revision,
                        c.direction,
                        c.batches,
                        c.started_at
                            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        c.updated_at
                            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        if c.direction == "upgrade" {
                            "up"
                        } else {
                            "down"
                        }
                    );
                }
                if pending.is_empty() {
                    out!("up to date");
                } else {
                    out!("pending ({}):", pending.len());
                    for id in &pending {
                        out!("  {}", history::short(&graph, &revisions, id, &[]));
                    }
                }
            }
            Ok(())
        }
        Command::History {
            log: true,
            rev_range: None,
            indicate_current: false,
        } => {
            let db = connect(project, g).await?;
            let history = db.history().await;
            db.close().await;
            let history = history?;
            if g.json {
                out!("{}", json!({ "history": history }));
            } else {
                for h in &history {
                    let error = match (&h.error, &h.sqlstate) {
                        (Some(e), Some(code)) => format!("  {e} (SQLSTATE {code})"),
                        (Some(e), None) => format!("  {e}"),
                        _ => String::new(),
                    };
                    out!(
                        "{} {:<9} {} {} ms  {}{error}",
                        h.started_at
                            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        h.direction,
                        h.revision,
                        h.duration_ms,
                        &h.checksum.chars().take(12).collect::<String>()
                    );
                }
            }
            Ok(())
        }
        Command::History { log: true, .. } => Err(ConfigError::new(
            "--log prints the database's log as it is; it cannot be combined with -r or -i",
        )
        .into()),
        Command::History {
            log: false,
            rev_range,
            indicate_current,
        } => {
            // As in Alembic, `history -v` / `--verbose` shows every field.
            let verbose = g.verbose > 0;
            let (revisions, graph) = load_graph(project)?;
            let range = rev_range.as_deref().map(split_range).transpose()?;
            let wants_db = *indicate_current
                || range.is_some_and(|(start, end)| start == "current" || end == "current");
            let current = if wants_db {
                let db = connect(project, g).await?;
                let heads = db.heads().await;
                db.close().await;
                heads?
            } else {
                Vec::new()
            };
            let ids: Vec<&str> = match range {
                Some((start, end)) => graph.range(&current, start, end)?,
                None => graph.walk(),
            };
            let marked: &[String] = if *indicate_current { &current } else { &[] };
            if g.json {
                let out: Vec<_> = ids
                    .iter()
                    .map(|id| history::json(&graph, &revisions, id))
                    .collect();
                out!("{}", json!({ "revisions": out }));
            } else {
                for id in ids {
                    if verbose {
                        out!("{}", history::verbose(&graph, &revisions, id, marked));
                    } else {
                        out!("{}", history::line(&graph, &revisions, id, marked));
                    }
                }
            }
            Ok(())
        }
        Command::Show { revision: target } if target == "current" => {
            // As in Alembic, `show current` shows the revision(s) the database is at.
            let (revisions, graph) = load_graph(project)?;
            // A read command: it does not create the embedded default database.
            let heads = match connect_existing(project, g).await? {
                Some(db) => {
                    let heads = db.heads().await;
                    db.close().await;
                    heads?
                }
                None => Vec::new(),
            };
            for h in &heads {
                if graph.info(h).is_none() {
                    return Err(GraphError::UnknownApplied(h.clone()).into());
                }
            }
            if heads.is_empty() {
                tracing::info!("the database is at base: no revision is applied");
            }
            if g.json {
                let out: Vec<_> = heads
                    .iter()
                    .map(|id| history::json(&graph, &revisions, id))
                    .collect();
                println!("{}", json!({ "revisions": out }));
            } else {
                for id in &heads {
                    print!("{}", history::verbose(&graph, &revisions, id, &heads));
                }
            }
            Ok(())
        }
        Command::Show { revision: target } => {
            let (revisions, graph) = load_graph(project)?;
            // `heads` and `LABEL@heads` name several revisions (Alembic shows them all); with
            // --json they give `{"revisions": [...]}` as `show current` does, whatever the
            // count, so the shape follows from the argument, not from the graph.
            let many = target == "heads" || target.ends_with("@heads");
            let ids = graph.resolve_all(target)?;
            if g.json && many {
                let out: Vec<_> = ids
                    .iter()
                    .map(|id| history::json(&graph, &revisions, id))
                    .collect();
                out!("{}", json!({ "revisions": out }));
            } else if g.json {
                out!("{}", history::json(&graph, &revisions, ids[0]));
            } else {
                for id in ids {
                    print!("{}", history::verbose(&graph, &revisions, id, &[]));
                }
            }
            Ok(())
        }
        Command::Heads {
            resolve_dependencies,
        } => {
            let (revisions, graph) = load_graph(project)?;
            let heads = if *resolve_dependencies {
                graph.real_heads()
            } else {
                graph.heads()
            };
            if g.json {
                out!("{}", json!({ "heads": heads }));
            } else {
                for id in heads {
                    out!("{}", history::short(&graph, &revisions, id, &[]));
                }
            }
            Ok(())
        }
        Command::Branches => {
            let (revisions, graph) = load_graph(project)?;
            let points = graph.branch_points();
            if g.json {
                let out: Vec<_> = points
                    .iter()
                    .map(|id| {
                        json!({
                            "revision": id,
                            "next_revisions": graph.info(id).map(|i| i.next_revisions),
                        })
                    })
                    .collect();
                out!("{}", json!({ "branches": out }));
            } else {
                for id in points {
                    out!("{}", history::short(&graph, &revisions, id, &[]));
                    for next in graph.info(id).map(|i| i.next_revisions).unwrap_or_default() {
                        out!("    -> {}", history::short(&graph, &revisions, &next, &[]));
                    }
                }
            }
            Ok(())
        }
        Command::Stamp { revisions, purge } => stamp(project, g, revisions, *purge).await,
        Command::Check {
            single_head,
            allow_modified,
        } => {
            let (revisions, graph) = load_graph(project)?;
            let heads = graph.heads();
            if *single_head && heads.len() > 1 {
                return Err(GraphError::NotSingleHead(
                    heads.into_iter().map(str::to_owned).collect(),
                )
                .into());
            }
            // The applied revisions, when there is a database to ask: a configured one (which
            // must be reachable), or the embedded default if its file exists.
            let verified = match connect_existing(project, g).await? {
                Some(db) => {
                    let result = async {
                        let applied = graph.applied(&db.heads().await?)?;
                        crate::toolchain::reuse_stored(
                            db.as_ref(),
                            &revisions,
                            &applied,
                            &crate::artifact::build_dir(project),
                        )
                        .await?;
                        integrity::verify(
                            project,
                            db.as_ref(),
                            &revisions,
                            &applied,
                            *allow_modified,
                        )
                        .await
                    }
                    .await;
                    db.close().await;
                    Some(result?)
                }
                None => None,
            };
            if let Some(v) = &verified
                && !v.not_built.is_empty()
            {
                tracing::warn!(
                    "{} applied revision(s) not verified because their component is not built here: {}; run `wasmig build` first to verify them",
                    v.not_built.len(),
                    v.not_built.join(", ")
                );
            }
            if g.json {
                out!(
                    "{}",
                    json!({
                        "ok": true,
                        "revisions": revisions.len(),
                        "heads": heads,
                        "applied": verified,
                    })
                );
            } else {
                out!(
                    "ok: {} revision(s), {} head(s): {}",
                    revisions.len(),
                    heads.len(),
                    heads.join(", ")
                );
                match &verified {
                    Some(v) => {
                        out!(
                            "ok: {} applied revision(s) match their recorded checksums",
                            v.verified.len()
                        );
                        if !v.unrecorded.is_empty() {
                            out!(
                                "not verified: {} applied revision(s) without a recorded checksum (only stamped): {}",
                                v.unrecorded.len(),
                                v.unrecorded.join(", ")
                            );
                        }
                        if !v.not_built.is_empty() {
                            out!(
                                "not verified: {} applied revision(s) whose component is not built: {}",
                                v.not_built.len(),
                                v.not_built.join(", ")
                            );
                        }
                        if !v.modified.is_empty() {
                            out!(
                                "modified (allowed): {}",
                                v.modified
                                    .iter()
                                    .map(|m| m.revision.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            );
                        }
                    }
                    None => out!("no database: applied revisions not verified"),
                }
            }
            Ok(())
        }
        Command::Rehash { revisions: targets } => {
            let (revisions, graph) = load_graph(project)?;
            let db = connect(project, g).await?;
            // Like stamp, rehash writes the history table: not while a run is in progress.
            let result = with_lock(
                db.as_ref(),
                g,
                integrity::rehash(project, db.as_ref(), &revisions, &graph, targets),
            )
            .await;
            db.close().await;
            let changed = result?;
            if g.json {
                out!("{}", json!({ "rehashed": changed }));
            }
            Ok(())
        }
        Command::Resolve { revision, state } => resolve(project, g, revision, *state).await,
    }
}

/// `wasmig resolve REV --as STATE`: clears the failed mark and, when the revision's step is
/// to count as done, moves the heads as that step would have (the step's head change is
/// stored with the mark, as the planner made it).
async fn resolve(
    project: &Project,
    g: &Global,
    target: &str,
    state: Resolution,
) -> anyhow::Result<()> {
    let (revisions, graph) = load_graph(project)?;
    let db = connect(project, g).await?;
    let result = with_lock(db.as_ref(), g, async {
        db.ensure_version_tables().await?;
        let failed = db.failed().await?;
        let checkpoints = db.checkpoints().await?;
        // An exact id first: the mark may name a revision this checkout no longer has.
        let id = match failed
            .iter()
            .map(|f| &f.revision)
            .chain(checkpoints.iter().map(|c| &c.revision))
            .find(|r| *r == target)
        {
            Some(r) => r.clone(),
            None => graph.resolve(target)?.to_owned(),
        };
        // A batched step part-way through is resolved like a failed mark: its checkpoint
        // carries the step's head change, and the checksum of what its batches ran.
        let batched = checkpoints.into_iter().find(|c| c.revision == id);
        let mark = match &batched {
            Some(c) => FailedMark {
                revision: c.revision.clone(),
                direction: c.direction.clone(),
                remove_heads: c.remove_heads.clone(),
                add_heads: c.add_heads.clone(),
                statement: 0,
                error: String::new(),
                sqlstate: None,
                failed_at: c.updated_at,
            },
            None => failed
                .into_iter()
                .find(|f| f.revision == id)
                .ok_or_else(|| NotFailed(id.clone()))?,
        };
        let heads = db.heads().await?;
        // `--as applied` completes a failed upgrade; `--as rolled-back` completes a failed
        // downgrade. Otherwise the heads stay as the failed step found them.
        let step_done = (mark.direction == "upgrade") == (state == Resolution::Applied);
        if step_done && !mark.remove_heads.iter().all(|h| heads.contains(h)) {
            return Err(GraphError::HeadsMoved {
                revision: id.clone(),
                expected: mark.remove_heads.clone(),
                found: heads.clone(),
            }
            .into());
        }
        let mut new = heads.clone();
        if step_done {
            new.retain(|h| !mark.remove_heads.contains(h));
            for h in &mark.add_heads {
                if !new.contains(h) {
                    new.push(h.clone());
                }
            }
            new.sort();
        }
        // An applied revision gets the checksum of its files now, so later edits are noticed.
        let artifact = revisions
            .iter()
            .find(|r| r.id() == id)
            .and_then(|revision| {
                revision::read_artifact(revision, &crate::artifact::build_dir(project))
                    .ok()
                    .map(|a| (revision, a))
            });
        // The checksum of what ran (the `failed` row records it), not of the files now: a
        // fixed file must not be accepted without `rehash`.
        let ran = match &batched {
            Some(c) => Some(c.checksum.clone()),
            None => db
                .history()
                .await?
                .into_iter()
                .rev()
                .find(|h| h.revision == id && h.direction == "failed")
                .map(|h| h.checksum),
        }
        .filter(|c| !c.is_empty());
        let now_checksum = artifact.as_ref().map(|(_, a)| a.checksum());
        let checksum = match (state, &ran, &now_checksum) {
            (Resolution::Applied, Some(ran), _) => ran.clone(),
            (Resolution::Applied, None, Some(files)) => {
                tracing::warn!(
                    "revision {id}: no record of what ran (wasmig was killed before it could write one); recording the checksum of its files as they are now"
                );
                files.clone()
            }
            (Resolution::Applied, None, None) => {
                return Err(ConfigError::new(format!(
                    "revision {id}: its files cannot be read and no record of what ran exists, so it cannot be recorded as applied with a checksum; restore its files and resolve again"
                ))
                .into());
            }
            _ => String::new(),
        };
        // The artifact table follows the heads, as after the step itself: stored once the
        // revision counts as applied (only if the files are what ran), forgotten once it
        // counts as reverted.
        let to_store = match (state, &artifact) {
            (Resolution::Applied, Some((revision, a))) if a.checksum() == checksum => {
                Some(revision.to_stored(a)?)
            }
            _ => None,
        };
        let now = Utc::now();
        let note = format!("resolved as {}", state.as_str());
        let record = StepRecord {
            remove: &heads,
            add: &new,
            revision: &id,
            direction: "resolve",
            checksum: &checksum,
            started_at: now,
            finished_at: now,
            error: Some(&note),
            sqlstate: None,
        };
        let mut session = db.begin().await?;
        let written = async {
            session.record_step(&record).await?;
            match (&to_store, state) {
                (Some(stored), _) if step_done => session.store_artifact(stored).await?,
                (None, Resolution::RolledBack) if step_done => {
                    session.forget_artifact(&id).await?
                }
                _ => {}
            }
            if batched.is_some() {
                session.clear_checkpoint(&id).await
            } else {
                session.clear_failed(&id).await
            }
        }
        .await;
        if let Err(e) = written {
            let _ = session.rollback().await;
            return Err(e);
        }
        session.commit().await?;
        anyhow::Ok((id, heads, new))
    })
    .await;
    db.close().await;
    let (id, before, after) = result?;
    let show = |h: &[String]| {
        if h.is_empty() {
            "base".to_owned()
        } else {
            h.join(", ")
        }
    };
    tracing::info!(
        "resolved {id} as {}: heads {} -> {}",
        state.as_str(),
        show(&before),
        show(&after)
    );
    if g.json {
        out!(
            "{}",
            json!({ "revision": id, "as": state.as_str(), "heads": after })
        );
    }
    Ok(())
}

fn created(dir: &std::path::Path, json: bool) {
    tracing::info!("created {}", dir.display());
    if json {
        out!("{}", json!({ "directory": dir }));
    }
}

/// `START:END` of `history -r`.
fn split_range(raw: &str) -> Result<(&str, &str), ConfigError> {
    raw.split_once(':').ok_or_else(|| {
        ConfigError::new(format!(
            "invalid --rev-range `{raw}`: use START:END, e.g. base:head, ae10:, :current"
        ))
    })
}

async fn stamp(
    project: &Project,
    g: &Global,
    targets: &[String],
    purge: bool,
) -> anyhow::Result<()> {
    let (_, graph) = load_graph(project)?;
    let db = connect(project, g).await?;
    let result = with_lock(db.as_ref(), g, async {
        db.ensure_version_tables().await?;
        // Moving the heads under a failed mark would make its resolution wrong, and so
        // would moving them under a batched step part-way through.
        let failed = db.failed().await?;
        if !failed.is_empty() {
            return Err(FailedError(failed).into());
        }
        let checkpoints = db.checkpoints().await?;
        if !checkpoints.is_empty() {
            return Err(InProgressError(checkpoints).into());
        }
        let heads = db.heads().await?;
        let new = graph.plan_stamp(&heads, targets, purge)?;
        if new != heads {
            let now = Utc::now();
            let label = if new.is_empty() {
                "base".to_owned()
            } else {
                new.join(",")
            };
            let mut session = db.begin().await?;
            let record = StepRecord {
                remove: &heads,
                add: &new,
                revision: &label,
                direction: "stamp",
                checksum: "",
                started_at: now,
                finished_at: now,
                error: None,
                sqlstate: None,
            };
            // Revisions the stamp un-applies lose their stored copy, so a later `down`
            // without their files never runs what an earlier application stored; that
            // includes unknown stored heads a --purge drops, and what lies below them.
            let after = graph.applied(&new)?;
            let written = async {
                session.record_step(&record).await?;
                session.forget_artifacts_except(&after).await
            }
            .await;
            if let Err(e) = written {
                let _ = session.rollback().await;
                return Err(e);
            }
            session.commit().await?;
        }
        anyhow::Ok((heads, new))
    })
    .await;
    db.close().await;
    let (before, after) = result?;
    let show = |h: &[String]| {
        if h.is_empty() {
            "base".to_owned()
        } else {
            h.join(", ")
        }
    };
    if before == after {
        tracing::info!("nothing to do: the database is already at {}", show(&after));
    } else {
        tracing::info!(
            "stamped: {} -> {} (no migration ran)",
            show(&before),
            show(&after)
        );
    }
    if g.json {
        out!("{}", json!({ "heads": after }));
    }
    Ok(())
}

async fn migrate(
    project: &Project,
    g: &Global,
    args: &RunArgs,
    upgrade: bool,
) -> anyhow::Result<()> {
    let (revisions, graph) = load_graph(project)?;
    // `--plan` writes nothing, not even a SQLite file: a database that does not exist yet
    // is at base.
    if args.plan
        && let (db::DatabaseUrl::Sqlite { path }, _) =
            project.database_url(g.database_url.as_deref())?
        && !path.exists()
    {
        let steps = if upgrade {
            graph.plan_upgrade(&[], args.target.as_deref().unwrap_or("head"))?
        } else {
            graph.plan_downgrade(&[], args.target.as_deref().unwrap_or("-1"))?
        };
        print_plan(g, &steps, &[]);
        return Ok(());
    }
    let db = connect(project, g).await?;
    // `--plan` writes nothing, so it does not wait for a run in progress.
    let result = if args.plan {
        migrate_locked(project, g, args, upgrade, revisions, graph, db.as_ref()).await
    } else {
        with_lock(
            db.as_ref(),
            g,
            migrate_locked(project, g, args, upgrade, revisions, graph, db.as_ref()),
        )
        .await
    };
    db.close().await;
    result
}

/// `up`/`down` once the database is connected (and, unless `--plan`, locked): plan from
/// the heads, then run. For `down`, applied revisions missing from the project are added
/// from the copies stored in the database.
async fn migrate_locked(
    project: &Project,
    g: &Global,
    args: &RunArgs,
    upgrade: bool,
    revisions: Vec<Revision>,
    graph: Graph,
    db: &dyn Database,
) -> anyhow::Result<()> {
    // A revision that stopped part-way leaves the database in a state no plan starts from.
    let failed = db.failed().await?;
    if !failed.is_empty() {
        return Err(FailedError(failed).into());
    }
    let heads = db.heads().await?;
    let (revisions, graph) = if upgrade {
        (revisions, graph)
    } else {
        with_stored_revisions(project, db, revisions, graph, &heads).await?
    };
    let (revisions, graph) = (&revisions[..], &graph);
    let steps = if upgrade {
        graph.plan_upgrade(&heads, args.target.as_deref().unwrap_or("head"))?
    } else {
        graph.plan_downgrade(&heads, args.target.as_deref().unwrap_or("-1"))?
    };
    // A batched step part-way through is finished by a plan that runs it again (it resumes
    // from its checkpoint); any other plan would build on half of a data migration.
    let checkpoints = db.checkpoints().await?;
    let unfinished: Vec<_> = checkpoints
        .iter()
        .filter(|c| {
            !steps
                .iter()
                .any(|s| s.revision == c.revision && s.action.as_str() == c.direction)
        })
        .cloned()
        .collect();
    if !unfinished.is_empty() {
        return Err(InProgressError(unfinished).into());
    }
    let applied = graph.applied(&heads)?;
    // Applied revisions of non-reproducible toolchains run the component they ran, from the
    // database, when this checkout has not built it from the same sources.
    if !args.no_build && !args.plan {
        crate::toolchain::reuse_stored(
            db,
            revisions,
            &applied,
            &crate::artifact::build_dir(project),
        )
        .await?;
    }
    // Build first, so applied Rust revisions are verified against the components that would
    // run (a rebuild may change them).
    if !args.plan && !steps.is_empty() && !args.no_build && runner::needs_build(revisions, &steps) {
        crate::artifact::build(project, revisions)?;
    }
    integrity::verify(project, db, revisions, &applied, args.allow_modified).await?;
    if args.plan {
        print_plan(g, &steps, &checkpoints);
        return Ok(());
    }
    if steps.is_empty() {
        tracing::info!(
            "nothing to do: the database is at {}",
            if heads.is_empty() {
                "base".to_owned()
            } else {
                heads.join(", ")
            }
        );
        if g.json {
            out!("{}", json!({ "steps": [] }));
        }
        return Ok(());
    }
    let options = RunOptions {
        use_cache: !args.no_cache,
        atomic: args.atomic,
        allow_modified: args.allow_modified,
    };
    let reports = runner::run(project, db, revisions, &steps, options).await?;
    let ms: u64 = reports.iter().map(|r| r.duration_ms).sum();
    tracing::info!(
        "{} {} revision(s) in {ms} ms",
        if upgrade { "applied" } else { "reverted" },
        reports.len()
    );
    if g.json {
        out!("{}", json!({ "steps": reports }));
    }
    Ok(())
}

/// Prints a plan: `{"steps": [...]}` with `--json`, else a line per step (saying which
/// resume from a checkpoint).
fn print_plan(g: &Global, steps: &[crate::graph::Step], checkpoints: &[db::Checkpoint]) {
    if g.json {
        out!("{}", json!({ "steps": steps }));
        return;
    }
    for s in steps {
        match checkpoints
            .iter()
            .find(|c| c.revision == s.revision && c.direction == s.action.as_str())
        {
            Some(c) => out!(
                "{} {} (resuming after batch {})",
                s.action.as_str(),
                s.revision,
                c.batches
            ),
            None => out!("{} {}", s.action.as_str(), s.revision),
        }
    }
}

/// Runs `work` holding the database's migration lock, and releases the lock on every
/// path out of it: `work` cannot return past the guard. A panic or a kill releases it too,
/// as its connection or file closes.
///
/// # Errors
/// [`crate::error::LockTimeout`] when the lock stays held past `--lock-timeout`; else the
/// error of `work`.
async fn with_lock<T>(
    db: &dyn Database,
    g: &Global,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let guard = db
        .lock(std::time::Duration::from_secs(g.lock_timeout))
        .await?;
    // The end-to-end tests drive the panic path through this (debug builds only): a panic
    // while the lock is held must still release it, and exit with code 1.
    #[cfg(debug_assertions)]
    if std::env::var_os("WASMIG_TEST_PANIC_WHILE_LOCKED").is_some() {
        panic!("WASMIG_TEST_PANIC_WHILE_LOCKED is set");
    }
    let result = work.await;
    // Closing the guard's connection or file releases the lock anyway. But an unlock that
    // finds the lock gone means it was lost during the run (its connection was ended), and
    // another run may have overlapped: a successful run must not report plain success.
    match (guard.release().await, result) {
        (Ok(()), result) => result,
        (Err(e), Ok(_)) => Err(e.context(
            "the run finished, but wasmig could not confirm it held the migration lock throughout; another run may have overlapped it: check `wasmig current` and `wasmig history --log`",
        )),
        (Err(e), Err(run)) => {
            tracing::warn!("releasing the migration lock: {e:#}");
            Err(run)
        }
    }
}

fn load_graph(project: &Project) -> anyhow::Result<(Vec<Revision>, Graph)> {
    let revisions = revision::load_all(&project.versions_dir())?;
    let graph = Graph::new(&revision::nodes(&revisions))?;
    Ok((revisions, graph))
}

/// Adds to `revisions` the applied revisions the project lacks, from the copies the database
/// stored when it applied them (an older release was deployed over a newer database), and
/// rebuilds the graph. Walks down from the stored heads the graph does not know, through the
/// down revisions and dependencies of each stored revision.
///
/// # Errors
/// [`GraphError::NoStoredCopy`] for a missing revision without a stored copy,
/// [`ConfigError`] for an invalid stored row, graph errors, database errors.
async fn with_stored_revisions(
    project: &Project,
    db: &dyn Database,
    mut revisions: Vec<Revision>,
    graph: Graph,
    heads: &[String],
) -> anyhow::Result<(Vec<Revision>, Graph)> {
    let mut missing: Vec<String> = heads
        .iter()
        .filter(|h| graph.info(h).is_none())
        .cloned()
        .collect();
    if missing.is_empty() {
        return Ok((revisions, graph));
    }
    let versions_dir = project.versions_dir();
    while let Some(id) = missing.pop() {
        if revisions.iter().any(|r| r.id() == id) {
            continue;
        }
        let stored = db
            .stored_artifact(&id)
            .await?
            .ok_or_else(|| GraphError::NoStoredCopy(id.clone()))?;
        let revision = Revision::from_stored(&versions_dir, &stored)?;
        tracing::debug!(
            "revision {id}: not in this project; using the copy stored in the database"
        );
        for below in revision.manifest.down_revisions() {
            if !revisions.iter().any(|r| r.id() == below) {
                missing.push(below);
            }
        }
        // A dependency may be a branch label, which the graph resolves: look for a stored
        // revision of that name only if there is one.
        let depends_on = revision.manifest.depends_on.as_ref();
        for dep in depends_on
            .map(revision::OneOrMany::to_vec)
            .unwrap_or_default()
        {
            if !revisions.iter().any(|r| r.id() == dep)
                && graph.dependency(&dep).is_err()
                && db.stored_artifact(&dep).await?.is_some()
            {
                missing.push(dep);
            }
        }
        revisions.push(revision);
    }
    let graph = Graph::new(&revision::nodes(&revisions))?;
    Ok((revisions, graph))
}

/// Connects to the configured database, or to the embedded default only if its file
/// exists (so a read-only command does not create it).
async fn connect_existing(
    project: &Project,
    g: &Global,
) -> anyhow::Result<Option<Box<dyn Database>>> {
    let (url, is_default) = project.database_url(g.database_url.as_deref())?;
    if let (true, db::DatabaseUrl::Sqlite { path }) = (is_default, &url)
        && !path.exists()
    {
        tracing::debug!(
            "no database configured and no {}: nothing applied to verify",
            path.display()
        );
        return Ok(None);
    }
    connect(project, g).await.map(Some)
}

async fn connect(project: &Project, g: &Global) -> anyhow::Result<Box<dyn Database>> {
    let (url, is_default) = project.database_url(g.database_url.as_deref())?;
    if is_default {
        tracing::info!("no database configured: using the embedded SQLite database {url}");
    } else {
        tracing::debug!("database: {url}");
    }
    db::connect(&url).await
}

//! The command line's grammar: global options, the commands and their arguments (clap).
//!
//! Commands use Alembic's names (`upgrade`/`downgrade` are aliases of `up`/`down`). Read
//! commands take `--json` and then print exactly one JSON document on stdout; human output
//! and logs go to stderr. What each command does is in `commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use wasmig::import::Format;
use wasmig::revision::Kind;

/// wasmig: database migrations in SQL or sandboxed WebAssembly.
#[derive(Debug, Parser)]
#[command(name = "wasmig", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

impl Cli {
    /// Whether the command runs on a fleet's targets (`--targets`, `--fleet`): they run side
    /// by side, each on a thread of its own.
    pub(crate) fn runs_a_fleet(&self) -> bool {
        match &self.command {
            Command::Up(run) | Command::Down(run) => run.fleet.source.is_set(),
            Command::Current(current) => current.source.is_set(),
            _ => false,
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct Global {
    /// The project directory (default: the nearest directory with wasmig.toml).
    #[arg(short = 'C', long = "project", global = true, value_name = "DIR")]
    pub(crate) project: Option<PathBuf>,
    /// The database URL (overrides DATABASE_URL and wasmig.toml).
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) database_url: Option<String>,
    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// More log output (-v debug, -vv trace); overrides LOG_LEVEL.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,
    /// How long up, down, stamp, rehash and resolve wait for another run's migration lock
    /// on the database (and for a killed run's session still at work), and any command for
    /// another session's lock on wasmig's tables, before giving up (exit 11).
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 60)]
    pub(crate) lock_timeout: u64,
    /// Run the project as untrusted code (a pull request in shared CI): jailed builds, no
    /// compile cache, the operator's ceilings, the untrusted SQL policy.
    #[arg(long, global = true, env = "WASMIG_UNTRUSTED")]
    pub(crate) untrusted: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
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
    Current(CurrentArgs),
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
    /// Test every revision's down on a scratch database: for each revision in order, up,
    /// down and up again (the stairway), comparing the schema after down with the schema
    /// before up, and after the second up with the first; stops at the first revision that
    /// fails (exit 14). The scratch database is created on the configured database's server
    /// (PostgreSQL, which needs CREATEDB) or as a temporary file (SQLite) and dropped at the
    /// end; the configured database itself is never touched.
    Test {
        /// Fail when there is more than one head (pytest-alembic's single-head test)
        /// instead of walking every branch (exit 4).
        #[arg(long)]
        single_head: bool,
        /// The most seconds a revision's up, down and up again may take.
        #[arg(long, value_name = "SECONDS")]
        budget_secs: Option<u64>,
        /// Keep the scratch database for inspection (its URL is printed) instead of
        /// dropping it.
        #[arg(long)]
        keep: bool,
        /// Create the scratch database on this PostgreSQL server (or next to this SQLite
        /// file) instead of the configured database's: where the configured role may not
        /// create databases.
        #[arg(long, value_name = "URL")]
        scratch_url: Option<String>,
        /// Do not build stale revisions (Rust, Python, JavaScript, C) first.
        #[arg(long)]
        no_build: bool,
        /// Compile components without reading or writing the compile cache.
        #[arg(long)]
        no_cache: bool,
    },
    /// Accept an intended change to applied revisions: record their current checksums.
    Rehash {
        /// The applied revisions whose files were changed on purpose.
        #[arg(required = true, value_name = "REV", allow_negative_numbers = true)]
        revisions: Vec<String>,
    },
    /// Import another tool's migrations as revisions (and, with --adopt, take over its
    /// applied state from its history table).
    Import {
        /// The tool the migrations are written for.
        #[arg(long, value_name = "FORMAT", value_parser = format_parser())]
        from: Format,
        /// Its migrations directory.
        #[arg(value_name = "SOURCE_DIR")]
        source: PathBuf,
        /// Also record in wasmig's tables the revisions the tool's history table says it
        /// applied, so `wasmig up` runs only the rest (the tool's table is left in place).
        #[arg(long)]
        adopt: bool,
        /// Print what would be written or recorded, and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// golang-migrate only: the tool ran with its PostgreSQL driver's
        /// `x-multi-statement=true`, sending each statement of a file on its own.
        #[arg(long)]
        x_multi_statement: bool,
    },
    /// Lint the SQL revisions for operations dangerous on a live database (squawk's rules
    /// on PostgreSQL, and wasmig's own): no database needed. Findings are exit 15.
    Lint {
        /// The revisions to lint (ids, labels, `heads`...); default: every revision.
        #[arg(value_name = "REV")]
        revisions: Vec<String>,
        /// Lint `down.sql` too (a rollback in production runs it).
        #[arg(long)]
        down: bool,
        /// The dialect whose rules apply; default: the configured database's.
        #[arg(long, value_enum, value_name = "DIALECT")]
        dialect: Option<LintDialect>,
        /// `human` (default), `json` (as `--json`), or `github` (workflow annotations).
        #[arg(long, value_enum, value_name = "FORMAT")]
        format: Option<LintFormat>,
        /// Also run the pending revisions in a dry run on the configured database (`up
        /// --dry-run`: rolled back, nothing recorded) and lint what they did: the statements
        /// components sent, DDL in batched revisions, rows written without a progress
        /// report, steps slower than `[lint] max_step_secs`.
        #[arg(long)]
        dry_run: bool,
        /// With --dry-run: how many batches of a batched revision to run (default 1).
        #[arg(long, value_name = "N", requires = "dry_run", value_parser = clap::value_parser!(u64).range(1..))]
        batches: Option<u64>,
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

/// `--kind`: the manifest's spellings, listed in `--help` and completed by shells.
fn kind_parser() -> impl clap::builder::TypedValueParser<Value = Kind> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(Kind::ALL.map(Kind::name))
        .map(|s| s.parse::<Kind>().expect("a listed kind"))
}

/// `--from`: the formats, listed in `--help`.
fn format_parser() -> impl clap::builder::TypedValueParser<Value = Format> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(Format::ALL.map(Format::name))
        .map(|s| s.parse::<Format>().expect("a listed format"))
}

/// clap's check of `--branch-label`: a bad label is a bad command line (exit 2), told why.
fn branch_label(label: &str) -> Result<String, String> {
    wasmig::graph::check_label(label)
        .map(|()| label.to_owned())
        .map_err(str::to_owned)
}

/// `wasmig lint --dialect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LintDialect {
    /// PostgreSQL: squawk's rules and wasmig's.
    Postgres,
    /// SQLite: wasmig's rules only.
    Sqlite,
}

/// `wasmig lint --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LintFormat {
    /// One line per finding, with its help, and a summary.
    Human,
    /// One JSON document.
    Json,
    /// GitHub Actions workflow commands (`::error file=...`), shown on the pull request.
    Github,
}

/// What `wasmig resolve` records about a failed revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Resolution {
    /// The revision's upgrade is complete in the database: it is applied.
    Applied,
    /// None of the revision's upgrade is in the database: it is not applied.
    RolledBack,
}

impl From<Resolution> for wasmig::migrator::Resolution {
    fn from(r: Resolution) -> Self {
        match r {
            Resolution::Applied => wasmig::migrator::Resolution::Applied,
            Resolution::RolledBack => wasmig::migrator::Resolution::RolledBack,
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Where to go: head, heads, base, an id or prefix, +N, -N, REV+N, REV-N, LABEL@head,
    /// LABEL@+N, LABEL@-N, LABEL@base.
    #[arg(allow_hyphen_values = true)]
    pub(crate) target: Option<String>,
    /// Do not build stale revisions (Rust, Python, JavaScript, C) first.
    #[arg(long)]
    pub(crate) no_build: bool,
    /// Compile components without reading or writing the compile cache.
    #[arg(long)]
    pub(crate) no_cache: bool,
    /// Print the steps without running them.
    #[arg(long, conflicts_with = "fleet_source")]
    pub(crate) plan: bool,
    /// Run every step in one transaction: all of them are applied, or none.
    #[arg(long, conflicts_with = "fleet_source")]
    pub(crate) atomic: bool,
    /// Run the steps for real in one transaction that is then rolled back, and print what
    /// each did (rows written per table, table locks taken, time); nothing is recorded.
    /// Steps from the first that cannot run in a transaction on are listed, not run.
    #[arg(long, conflicts_with_all = ["plan", "fleet_source"])]
    pub(crate) dry_run: bool,
    /// With --dry-run: how many batches of a batched revision to run (default 1).
    #[arg(long, value_name = "N", requires = "dry_run", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) batches: Option<u64>,
    /// Print the SQL script of the steps instead of running them, with wasmig's
    /// version-table statements: TARGET is `[FROM:]TARGET` (`down` needs FROM). SQL
    /// revisions need no database; component revisions are captured from a dry run on the
    /// database, which must be at FROM.
    #[arg(long, conflicts_with_all = ["plan", "dry_run", "journal", "atomic", "fleet_source"])]
    pub(crate) sql: bool,
    /// Write every SQL call of every step to FILE, one JSON line each: its text and
    /// parameters, rows, time, error, and what the server counted of it (rows per table,
    /// table locks).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["plan", "fleet_source"])]
    pub(crate) journal: Option<PathBuf>,
    /// Run even if applied revisions changed since they ran (warns for each).
    #[arg(long)]
    pub(crate) allow_modified: bool,
    /// Run the partitions of a partitioned batched revision ([partitions] in its manifest,
    /// PostgreSQL) with N workers; while another run holds the migration lock, join its
    /// partitioned revision rather than only wait.
    #[arg(long, value_name = "N", conflicts_with_all = ["plan", "dry_run", "sql", "atomic", "fleet_source"], value_parser = clap::value_parser!(u32).range(1..=i64::from(wasmig::db::MAX_WORKERS)))]
    pub(crate) workers: Option<u32>,
    #[command(flatten)]
    pub(crate) fleet: FleetArgs,
}

/// Fleet mode: the same migrations on many targets.
#[derive(Debug, Args)]
#[group(id = "fleet_source", multiple = false)]
pub(crate) struct FleetSource {
    /// Run on every target listed in FILE: per line a database URL, a SQLite file, or `URL
    /// schema=NAME` (a schema of that database), with optional name= and group=; a line
    /// `[GROUP]` starts a group, and groups run in order (a canary first).
    #[arg(long, value_name = "FILE")]
    pub(crate) targets: Option<PathBuf>,
    /// Run on the targets [fleet] in wasmig.toml lists (a file, a command's output or a
    /// catalog query).
    #[arg(long)]
    pub(crate) fleet: bool,
}

impl FleetSource {
    /// Whether a fleet's targets were given.
    pub(crate) fn is_set(&self) -> bool {
        self.targets.is_some() || self.fleet
    }
}

/// How a fleet runs.
#[derive(Debug, Args)]
pub(crate) struct FleetArgs {
    #[command(flatten)]
    pub(crate) source: FleetSource,
    /// Fleet: how many targets run at once (default: fleet.jobs, else 4).
    #[arg(long, value_name = "N", requires = "fleet_source", value_parser = clap::value_parser!(u64).range(1..=256))]
    pub(crate) jobs: Option<u64>,
    /// Fleet: after a failed target, start no other (stop, the default) or run the rest
    /// (continue).
    #[arg(long, value_enum, requires = "fleet_source")]
    pub(crate) on_error: Option<OnError>,
    /// Fleet: the ledger that lets a killed run resume (default .wasmig/fleet-ledger.jsonl).
    #[arg(long, value_name = "FILE", requires = "fleet_source")]
    pub(crate) ledger: Option<PathBuf>,
    /// Fleet: visit every target, whatever the ledger says an earlier run finished.
    #[arg(long, requires = "fleet_source")]
    pub(crate) fresh: bool,
}

/// What a failed target of a fleet does to the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum OnError {
    // Plain comments, not doc comments: clap would list documented values in a long help,
    // turning `--help` into its long layout.
    // Start no other target (those under way finish).
    Stop,
    // Report it, and run the others.
    Continue,
}

impl From<OnError> for wasmig::fleet::OnError {
    fn from(o: OnError) -> Self {
        match o {
            OnError::Stop => wasmig::fleet::OnError::Stop,
            OnError::Continue => wasmig::fleet::OnError::Continue,
        }
    }
}

/// `wasmig current`'s fleet options.
#[derive(Debug, Args)]
pub(crate) struct CurrentArgs {
    #[command(flatten)]
    pub(crate) source: FleetSource,
    /// With --targets or --fleet: how many targets are read at once (default: fleet.jobs,
    /// else 4).
    #[arg(long, value_name = "N", requires = "fleet_source", value_parser = clap::value_parser!(u64).range(1..=256))]
    pub(crate) jobs: Option<u64>,
}

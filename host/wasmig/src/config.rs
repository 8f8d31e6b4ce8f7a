//! The project: finding `wasmig.toml`, reading it, and resolving the database URL.
//!
//! Precedence for the database URL: `--database-url`, then `DATABASE_URL` (the process
//! environment, then the project's `.env`), then `database_url` in `wasmig.toml`, then the
//! embedded default, a SQLite file in the project directory.
//!
//! The project's `.env` is read, never loaded into the process environment, and only
//! `DATABASE_URL` and `LOG_LEVEL` are taken from it: a project's author must not be able to
//! set variables such as `WASMIG_CACHE_KEY` or `XDG_CACHE_HOME`, which choose the key that
//! authenticates compiled native code in the compile cache (`sandbox::cache`).
//!
//! Not here: revision manifests (`revision`), the sandbox's use of the limits (`sandbox`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::db::DatabaseUrl;
use crate::error::ConfigError;

/// The project configuration file's name.
pub const CONFIG_FILE: &str = "wasmig.toml";

/// Where wasmig's tables live on PostgreSQL unless `database_schema` says otherwise.
pub const DEFAULT_DATABASE_SCHEMA: &str = "public";

fn default_database_schema() -> String {
    DEFAULT_DATABASE_SCHEMA.to_owned()
}

/// Whether `name` is a schema name wasmig writes unquoted: a lowercase SQL identifier of at
/// most 63 bytes.
pub(crate) fn valid_schema(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The default directory name template of a new revision.
pub const DEFAULT_FILE_TEMPLATE: &str = "{year}_{month}_{day}_{hour}{minute}-{rev}_{slug}";

/// `wasmig.toml`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where revisions live, relative to the project directory.
    #[serde(default = "default_versions_dir")]
    pub versions_dir: PathBuf,
    /// The database URL (prefer `DATABASE_URL` for anything with a password).
    #[serde(default)]
    pub database_url: Option<String>,
    /// The PostgreSQL schema wasmig's own tables live in (default `public`): configured,
    /// never taken from a session's `search_path`, which a migration (or a role or database
    /// default it set) could point elsewhere. A lowercase SQL identifier.
    #[serde(default = "default_database_schema")]
    pub database_schema: String,
    /// The SQLite file used when no URL is configured, relative to the project directory.
    #[serde(default = "default_sqlite_file")]
    pub default_sqlite_file: PathBuf,
    /// The directory name template of new revisions.
    #[serde(default = "default_file_template")]
    pub file_template: String,
    /// Where compiled components are cached (default `.wasmig/cache` in the project;
    /// `WASMIG_CACHE_DIR` overrides).
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// Sandbox limits, the defaults for every revision.
    #[serde(default)]
    pub sandbox: SandboxSettings,
    /// Statement and lock timeouts inside each step (PostgreSQL), the defaults for every
    /// revision.
    #[serde(default)]
    pub timeouts: StatementTimeouts,
    /// Commands run after `wasmig revision` writes a file.
    #[serde(default)]
    pub hooks: Hooks,
    /// Always treat this project as untrusted, as `--untrusted` does (a project can turn
    /// the mode on, never off).
    #[serde(default)]
    pub untrusted: bool,
    /// PostgreSQL: the role every migration's SQL runs as (`SET LOCAL ROLE` in each step),
    /// so that the server refuses what that role may not do, wasmig's own tables included
    /// when the role has no rights on them; wasmig's own statements run as the role it
    /// connects as. The role must exist and be one the connecting role may switch to
    /// (checked at connect). Its exact name, as in `pg_roles` (quoted: case counts).
    /// `WASMIG_ROLE` in the environment overrides it (the operator's setting in shared CI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// `wasmig lint`'s rules for the whole project.
    #[serde(default)]
    pub lint: LintSettings,
    /// PostgreSQL: the migration lock. `"auto"` (the default) takes a session-level
    /// advisory lock, or a lease in `wasmig_lock` where advisory locks do not hold (a pooler
    /// in transaction mode, CockroachDB, YugabyteDB); `"advisory"` or `"lease"` choose.
    /// `WASMIG_LOCK` in the environment overrides it.
    #[serde(default)]
    pub lock: crate::db::LockMode,
    /// PostgreSQL: how a revision's SQL script runs. `"auto"` (the default) runs a script
    /// with DDL statement by statement on engines whose DDL is not transactional
    /// (CockroachDB, YugabyteDB, read from `version()`), else in a transaction;
    /// `"transaction"` or `"per-statement"` choose. `WASMIG_EXECUTION` in the environment
    /// overrides it.
    #[serde(default)]
    pub execution: crate::db::Execution,
    /// Limits wasmig holds a batched revision to between its batches, whatever its code.
    #[serde(default)]
    pub throttle: ThrottleSettings,
    /// PostgreSQL: how long a lease lasts unrenewed, in seconds (default 30, renewed every
    /// third of it): how long a run that died or stalled keeps the next one waiting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_lease_secs: Option<f64>,
    /// Fleet mode (`wasmig up --fleet`): where the targets come from and how they run.
    #[serde(default)]
    pub fleet: FleetSettings,
}

/// `[fleet]` in wasmig.toml: the targets of `--fleet` (one of `targets`, `targets_command`
/// or `targets_query`) and how a fleet run goes.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSettings {
    /// A targets file, relative to the project directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<PathBuf>,
    /// A command (program and arguments, no shell) run in the project directory, whose
    /// output is a targets file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets_command: Option<Vec<String>>,
    /// A query whose rows are the targets: a column `target` (a URL or a SQLite file), and
    /// optionally `schema`, `group` and `name`; run read-only on `catalog_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets_query: Option<String>,
    /// The database `targets_query` runs on (default: the project's database URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_url: Option<String>,
    /// How many targets run at once (default 4; `--jobs` overrides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs: Option<usize>,
    /// What a failed target does to the rest: `stop` (the default) or `continue`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<crate::fleet::OnError>,
    /// The ledger that lets a fleet run killed half-way resume (default
    /// `.wasmig/fleet-ledger.jsonl` in the project).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<PathBuf>,
}

/// `[throttle]` in wasmig.toml.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleSettings {
    /// PostgreSQL: before each batch of a batched revision, wait while a standby (any
    /// session of `pg_stat_replication`) has not replayed a batch this run committed more
    /// than this many seconds ago.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replication_lag_secs: Option<f64>,
    /// A component's writes: before each SQL call it makes, wait until the rows its
    /// `execute`, `execute-many` and `copy-in` calls wrote so far in the step (across its
    /// batches) are at most this many per second since its first call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rows_per_sec: Option<f64>,
    /// A batched revision: start at most this many batches per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batches_per_sec: Option<f64>,
}

impl ThrottleSettings {
    /// The replication-lag ceiling, if set.
    pub fn max_replication_lag(&self) -> Option<Duration> {
        self.max_replication_lag_secs.map(Duration::from_secs_f64)
    }

    /// A fresh row rate for one step, if `max_rows_per_sec` is set.
    pub fn row_rate(&self) -> Option<std::sync::Arc<crate::sandbox::throttle::RowRate>> {
        self.max_rows_per_sec
            .map(|r| std::sync::Arc::new(crate::sandbox::throttle::RowRate::new(r)))
    }

    /// The least time between the starts of two batches, if `max_batches_per_sec` is set.
    pub fn batch_interval(&self) -> Option<Duration> {
        self.max_batches_per_sec
            .map(|r| Duration::from_secs_f64(1.0 / r))
    }
}

/// `[lint]` in wasmig.toml.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LintSettings {
    /// The PostgreSQL version the rules assume (`"15"`, `"16.4"`; squawk's default, 15,
    /// when absent): some operations stopped rewriting tables in later versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_version: Option<String>,
    /// squawk rules to turn on beyond its defaults (its opt-in rules, such as
    /// `ban-drop-index`).
    #[serde(default)]
    pub include: Vec<String>,
    /// squawk rules to turn off for every revision.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// `wasmig lint --dry-run`: a step taking longer than this in the dry run is a finding
    /// (`slow-dry-run-step`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_step_secs: Option<f64>,
}

/// Whether `name` can be a PostgreSQL role's name: 1 to 63 bytes, no control characters
/// (wasmig quotes it, so any other character stands for itself).
fn valid_role(name: &str) -> bool {
    !name.is_empty() && name.len() <= 63 && !name.chars().any(char::is_control)
}

pub use wasmig_plan::manifest::{MAX_TIMEOUT_SECS, StatementTimeouts};

/// The largest `memory_limit_mib` accepted (64 GiB).
pub const MAX_MEMORY_LIMIT_MIB: u64 = 64 * 1024;

/// Limits applied to every guest unless its manifest overrides them.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxSettings {
    /// Linear-memory cap per guest, in MiB.
    #[serde(default = "default_memory_mib")]
    pub memory_limit_mib: u64,
    /// Wall-clock deadline per migration step, in seconds (fractions allowed).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: f64,
    /// The longest compiling one component may take, in seconds (a cache hit takes none).
    #[serde(default = "default_compile_timeout_secs")]
    pub compile_timeout_secs: f64,
    /// The largest component accepted, in MiB.
    #[serde(default = "default_max_component_mib")]
    pub max_component_mib: u64,
    /// Which of wasmtime's compilers turns components into native code: `"auto"`
    /// (Cranelift, or Winch for a run that compiles many new components at once),
    /// `"cranelift"` or `"winch"`.
    #[serde(default)]
    pub compiler: wasmig_sandbox::Compiler,
    /// For batched steps: the most batches one run commits before it stops.
    #[serde(default = "default_max_batches")]
    pub max_batches: u64,
    /// For batched steps: the longest one run spends on the step across its batches.
    #[serde(default = "default_batched_timeout_secs")]
    pub batched_timeout_secs: f64,
}

fn default_compile_timeout_secs() -> f64 {
    120.0
}
fn default_max_component_mib() -> u64 {
    64
}
fn default_max_batches() -> u64 {
    100_000
}
fn default_batched_timeout_secs() -> f64 {
    86_400.0
}

impl Default for SandboxSettings {
    fn default() -> Self {
        SandboxSettings {
            memory_limit_mib: default_memory_mib(),
            timeout_secs: default_timeout_secs(),
            compile_timeout_secs: default_compile_timeout_secs(),
            max_component_mib: default_max_component_mib(),
            compiler: wasmig_sandbox::Compiler::default(),
            max_batches: default_max_batches(),
            batched_timeout_secs: default_batched_timeout_secs(),
        }
    }
}

impl SandboxSettings {
    /// The deadline as a duration (at most [`MAX_TIMEOUT_SECS`] even if unchecked).
    pub fn timeout(&self) -> Duration {
        Duration::try_from_secs_f64(self.timeout_secs.min(MAX_TIMEOUT_SECS))
            .unwrap_or(Duration::ZERO)
    }

    /// What the sandbox itself enforces, for every component of a run.
    pub fn sandbox_options(&self) -> wasmig_sandbox::SandboxOptions {
        wasmig_sandbox::SandboxOptions {
            compile_timeout: Duration::try_from_secs_f64(
                self.compile_timeout_secs.min(MAX_TIMEOUT_SECS),
            )
            .unwrap_or(Duration::ZERO),
            max_component_bytes: self.max_component_mib.min(1024) * 1024 * 1024,
            compiler: self.compiler,
        }
    }

    /// The memory cap in bytes (at most [`MAX_MEMORY_LIMIT_MIB`] MiB even if unchecked).
    pub fn memory_limit_bytes(&self) -> u64 {
        self.memory_limit_mib.min(MAX_MEMORY_LIMIT_MIB) * 1024 * 1024
    }

    /// These settings with a revision's overrides from its manifest, checked like
    /// `wasmig.toml`'s.
    ///
    /// # Errors
    /// [`ConfigError`] naming `manifest` and the setting out of range.
    pub fn with_overrides(
        &self,
        manifest: &crate::revision::Manifest,
        path: &Path,
    ) -> Result<SandboxSettings, ConfigError> {
        let settings = SandboxSettings {
            timeout_secs: manifest.timeout_secs.unwrap_or(self.timeout_secs),
            memory_limit_mib: manifest.memory_limit_mib.unwrap_or(self.memory_limit_mib),
            max_batches: manifest.max_batches.unwrap_or(self.max_batches),
            batched_timeout_secs: manifest
                .batched_timeout_secs
                .unwrap_or(self.batched_timeout_secs),
            ..*self
        };
        let manifest = path;
        settings.check().map_err(|reason| {
            ConfigError::new(format!("invalid manifest {}: {reason}", manifest.display()))
        })?;
        Ok(settings)
    }

    /// Why the settings are out of range, naming the setting and the range.
    fn check(&self) -> Result<(), String> {
        let timeout = self.timeout_secs;
        if !(timeout.is_finite() && timeout > 0.0 && timeout <= MAX_TIMEOUT_SECS) {
            return Err(format!(
                "timeout_secs = {timeout:?} is out of range; use a number of seconds above 0 and at most {MAX_TIMEOUT_SECS} (7 days)"
            ));
        }
        let memory = self.memory_limit_mib;
        if !(1..=MAX_MEMORY_LIMIT_MIB).contains(&memory) {
            return Err(format!(
                "memory_limit_mib = {memory} is out of range; use 1 to {MAX_MEMORY_LIMIT_MIB} (64 GiB)"
            ));
        }
        for (name, value) in [
            ("compile_timeout_secs", self.compile_timeout_secs),
            ("batched_timeout_secs", self.batched_timeout_secs),
        ] {
            if !(value.is_finite() && value > 0.0 && value <= MAX_TIMEOUT_SECS) {
                return Err(format!(
                    "{name} = {value:?} is out of range; use a number of seconds above 0 and at most {MAX_TIMEOUT_SECS} (7 days)"
                ));
            }
        }
        if !(1..=1024).contains(&self.max_component_mib) {
            return Err(format!(
                "max_component_mib = {} is out of range; use 1 to 1024",
                self.max_component_mib
            ));
        }
        if self.max_batches == 0 {
            return Err("max_batches = 0 is out of range; use 1 or more".to_owned());
        }
        Ok(())
    }
}

/// Post-write hooks, keyed by revision kind.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// Commands run on each Rust source file written; `{file}` is replaced by its path.
    /// A missing program is a warning, not an error.
    #[serde(default = "default_rust_hooks")]
    pub rust: Vec<Vec<String>>,
    /// Commands run on each SQL file written.
    #[serde(default)]
    pub sql: Vec<Vec<String>>,
    /// Commands run on each Python source file written (e.g. `[["black", "{file}"]]`).
    #[serde(default)]
    pub python: Vec<Vec<String>>,
    /// Commands run on each JavaScript source file written.
    #[serde(default)]
    pub js: Vec<Vec<String>>,
    /// Commands run on each C source file written.
    #[serde(default)]
    pub c: Vec<Vec<String>>,
    /// Commands run on each Go file written (`migration.go`, `go.mod`).
    #[serde(default)]
    pub go: Vec<Vec<String>>,
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            rust: default_rust_hooks(),
            sql: Vec::new(),
            python: Vec::new(),
            js: Vec::new(),
            c: Vec::new(),
            go: Vec::new(),
        }
    }
}

fn default_versions_dir() -> PathBuf {
    PathBuf::from("versions")
}
fn default_sqlite_file() -> PathBuf {
    PathBuf::from("wasmig.db")
}
fn default_file_template() -> String {
    DEFAULT_FILE_TEMPLATE.to_owned()
}
fn default_memory_mib() -> u64 {
    512
}
fn default_timeout_secs() -> f64 {
    600.0
}
fn default_rust_hooks() -> Vec<Vec<String>> {
    vec![vec![
        "rustfmt".into(),
        "--edition".into(),
        "2024".into(),
        "{file}".into(),
    ]]
}

impl Default for Config {
    fn default() -> Self {
        toml::from_str("").expect("the empty config is valid")
    }
}

/// The variable that sets `lock` for every project, overriding `wasmig.toml`.
pub const LOCK_VARIABLE: &str = "WASMIG_LOCK";

/// The longest lease accepted, in seconds (a day).
const MAX_LEASE_SECS: f64 = 86_400.0;

impl Config {
    /// How a PostgreSQL database takes the migration lock: `lock` and `lock_lease_secs`,
    /// with `WASMIG_LOCK` from the environment over `lock`.
    ///
    /// # Errors
    /// [`ConfigError`] when `WASMIG_LOCK` is not `auto`, `advisory` or `lease`.
    pub fn lock_settings(&self) -> Result<crate::db::LockSettings, ConfigError> {
        let mut settings = crate::db::LockSettings::default();
        if let Some(secs) = self.lock_lease_secs {
            settings.lease = Duration::from_secs_f64(secs);
        }
        settings.mode = self.lock;
        settings.source = format!("lock = {:?} in wasmig.toml", lock_word(self.lock));
        if let Some(word) = std::env::var(LOCK_VARIABLE).ok().filter(|w| !w.is_empty()) {
            settings.mode = match word.as_str() {
                "auto" => crate::db::LockMode::Auto,
                "advisory" => crate::db::LockMode::Advisory,
                "lease" => crate::db::LockMode::Lease,
                _ => {
                    return Err(ConfigError::new(format!(
                        "{LOCK_VARIABLE}={word:?} is not a kind of lock: auto, advisory or lease"
                    )));
                }
            };
            settings.source = format!("{LOCK_VARIABLE}={word}");
        }
        Ok(settings)
    }
}

/// The variable that sets `execution` for every project, overriding `wasmig.toml`.
pub const EXECUTION_VARIABLE: &str = "WASMIG_EXECUTION";

impl Config {
    /// How a PostgreSQL revision's SQL script runs: `execution`, with `WASMIG_EXECUTION`
    /// from the environment over it; and where that was set, for messages
    /// (`execution = "per-statement" in wasmig.toml`).
    ///
    /// # Errors
    /// [`ConfigError`] when `WASMIG_EXECUTION` is not `auto`, `transaction` or
    /// `per-statement`.
    pub fn execution(&self) -> Result<(crate::db::Execution, String), ConfigError> {
        use crate::db::Execution;
        let word = |e: Execution| match e {
            Execution::Auto => "auto",
            Execution::Transaction => "transaction",
            Execution::PerStatement => "per-statement",
        };
        match std::env::var(EXECUTION_VARIABLE)
            .ok()
            .filter(|w| !w.is_empty())
        {
            None => Ok((
                self.execution,
                format!("execution = {:?} in wasmig.toml", word(self.execution)),
            )),
            Some(w) => {
                let mode = [
                    Execution::Auto,
                    Execution::Transaction,
                    Execution::PerStatement,
                ]
                .into_iter()
                .find(|e| word(*e) == w)
                .ok_or_else(|| {
                    ConfigError::new(format!(
                        "{EXECUTION_VARIABLE}={w:?} is not a way to run scripts: auto, transaction or per-statement"
                    ))
                })?;
                Ok((mode, format!("{EXECUTION_VARIABLE}={w}")))
            }
        }
    }
}

/// `lock`'s word in wasmig.toml.
fn lock_word(mode: crate::db::LockMode) -> &'static str {
    match mode {
        crate::db::LockMode::Auto => "auto",
        crate::db::LockMode::Advisory => "advisory",
        crate::db::LockMode::Lease => "lease",
    }
}

/// The variable that sets `role` for every project, overriding `wasmig.toml`.
pub const ROLE_VARIABLE: &str = "WASMIG_ROLE";

/// The only variables taken from a project's `.env`.
const DOT_ENV_VARIABLES: &[&str] = &["DATABASE_URL", "LOG_LEVEL"];

/// A loaded project: its directory and configuration.
#[derive(Debug, Clone)]
pub struct Project {
    /// The directory holding `wasmig.toml`.
    pub root: PathBuf,
    /// The parsed configuration.
    pub config: Config,
    /// [`DOT_ENV_VARIABLES`] as set in the project's `.env` (empty values left out).
    dot_env: BTreeMap<String, String>,
    /// Untrusted mode's working directory, outside the checkout (`None`: `.wasmig`).
    private_work_dir: Option<std::sync::Arc<crate::untrusted::PrivateDir>>,
    /// The operator's ceilings on the limits this project's files set.
    ceilings: crate::ceilings::Ceilings,
}

impl Project {
    /// Finds `wasmig.toml` in `start` or its ancestors and loads it, with `.env` beside it.
    ///
    /// # Errors
    /// [`ConfigError`] when there is no project or the file is invalid.
    pub fn discover(start: &Path) -> Result<Self, ConfigError> {
        let start = std::path::absolute(start).unwrap_or_else(|_| start.to_path_buf());
        let root = start
            .ancestors()
            .find(|dir| dir.join(CONFIG_FILE).is_file())
            .ok_or_else(|| {
                ConfigError::with_next(
                    format!(
                        "no {CONFIG_FILE} in {} or any parent directory",
                        start.display()
                    ),
                    wasmig_plan::NextStep::Init,
                )
            })?
            .to_path_buf();
        Self::load(&root)
    }

    /// Loads the project in `root`.
    ///
    /// # Errors
    /// [`ConfigError`] when `wasmig.toml` is unreadable or invalid.
    pub fn load(root: &Path) -> Result<Self, ConfigError> {
        let path = root.join(CONFIG_FILE);
        // Confined: a `wasmig.toml` linked to a file elsewhere would show its lines in the
        // parse error.
        let text = crate::confined::read_to_string(root, &path)
            .map_err(|e| ConfigError::new(format!("cannot read {}: {e:#}", path.display())))?;
        let config: Config = toml::from_str(&text)
            .map_err(|e| ConfigError::new(format!("invalid {}: {e}", path.display())))?;
        let origin = path.display().to_string();
        wasmig_plan::manifest::check_inside(&config.versions_dir, "versions_dir", &origin)?;
        wasmig_plan::manifest::check_inside(
            &config.default_sqlite_file,
            "default_sqlite_file",
            &origin,
        )?;
        if let Some(cache) = &config.cache_dir {
            wasmig_plan::manifest::check_inside(cache, "cache_dir", &origin)?;
        }
        if !valid_schema(&config.database_schema) {
            return Err(ConfigError::new(format!(
                "invalid {}: database_schema = {:?} is not a lowercase SQL identifier (letters, digits and _, at most 63)",
                path.display(),
                config.database_schema
            )));
        }
        if let Some(secs) = config.lock_lease_secs
            && !(0.1..=MAX_LEASE_SECS).contains(&secs)
        {
            return Err(ConfigError::new(format!(
                "invalid {}: lock_lease_secs = {secs} is not between 0.1 and {MAX_LEASE_SECS} seconds",
                path.display(),
            )));
        }
        if let Some(secs) = config.throttle.max_replication_lag_secs
            && !(secs.is_finite() && secs > 0.0 && secs <= MAX_LEASE_SECS)
        {
            return Err(ConfigError::new(format!(
                "invalid {}: throttle.max_replication_lag_secs = {secs} is out of range; use a number of seconds above 0 and at most {MAX_LEASE_SECS}",
                path.display(),
            )));
        }
        if let Some(path) = &config.fleet.targets {
            wasmig_plan::manifest::check_inside(path, "fleet.targets", &origin)?;
        }
        if let Some(path) = &config.fleet.ledger {
            wasmig_plan::manifest::check_inside(path, "fleet.ledger", &origin)?;
        }
        let sources = [
            config.fleet.targets.is_some(),
            config.fleet.targets_command.is_some(),
            config.fleet.targets_query.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() > 1 {
            return Err(ConfigError::new(format!(
                "invalid {}: [fleet] sets more than one of targets, targets_command and targets_query; keep one",
                path.display(),
            )));
        }
        if config
            .fleet
            .targets_command
            .as_ref()
            .is_some_and(|c| c.first().is_none_or(String::is_empty))
        {
            return Err(ConfigError::new(format!(
                "invalid {}: fleet.targets_command is empty; give the program and its arguments, as [\"./list-tenants\", \"--all\"]",
                path.display(),
            )));
        }
        if let Some(jobs) = config.fleet.jobs
            && !(1..=crate::fleet::MAX_JOBS).contains(&jobs)
        {
            return Err(ConfigError::new(format!(
                "invalid {}: fleet.jobs = {jobs} is not between 1 and {}",
                path.display(),
                crate::fleet::MAX_JOBS
            )));
        }
        for (name, value) in [
            ("max_rows_per_sec", config.throttle.max_rows_per_sec),
            ("max_batches_per_sec", config.throttle.max_batches_per_sec),
        ] {
            if let Some(rate) = value
                && !(rate.is_finite() && (0.001..=1e12).contains(&rate))
            {
                return Err(ConfigError::new(format!(
                    "invalid {}: throttle.{name} = {rate} is out of range; use a number above 0.001",
                    path.display(),
                )));
            }
        }
        if let Some(role) = &config.role
            && !valid_role(role)
        {
            return Err(ConfigError::new(format!(
                "invalid {}: role = {role:?} is not a PostgreSQL role name (1 to 63 bytes, no control characters)",
                path.display(),
            )));
        }
        // The operator's choice, from the real environment (never `.env`): in shared CI the
        // project file is the pull request's, which could drop its `role` line.
        let mut config = config;
        if let Some(role) = std::env::var(ROLE_VARIABLE).ok().filter(|r| !r.is_empty()) {
            if !valid_role(&role) {
                return Err(ConfigError::new(format!(
                    "{ROLE_VARIABLE}={role:?} is not a PostgreSQL role name (1 to 63 bytes, no control characters)"
                )));
            }
            config.role = Some(role);
        }
        config.sandbox.check().map_err(|reason| {
            ConfigError::new(format!("invalid {}: sandbox.{reason}", path.display()))
        })?;
        config
            .timeouts
            .with_overrides(&StatementTimeouts::default(), &path)?;
        Ok(Project {
            root: root.to_path_buf(),
            config,
            dot_env: read_dot_env(root, &root.join(".env")),
            private_work_dir: None,
            ceilings: crate::ceilings::Ceilings::from_env()?,
        })
    }

    /// A variable from the project's `.env` (only `DATABASE_URL` and `LOG_LEVEL` are read).
    pub fn dot_env(&self, name: &str) -> Option<&str> {
        self.dot_env.get(name).map(String::as_str)
    }

    /// A variable from the process environment, else from the project's `.env`; empty
    /// values count as unset.
    pub fn env_var(&self, name: &str) -> Option<String> {
        std::env::var(name)
            .ok()
            .filter(|s| !s.trim().is_empty())
            .or_else(|| self.dot_env(name).map(str::to_owned))
    }

    /// The versions directory.
    pub fn versions_dir(&self) -> PathBuf {
        self.root.join(&self.config.versions_dir)
    }

    /// wasmig's working directory (built components, cache): `.wasmig` in the project, or
    /// in untrusted mode a private directory outside the checkout.
    pub fn work_dir(&self) -> PathBuf {
        match &self.private_work_dir {
            Some(dir) => dir.path().to_path_buf(),
            None => self.root.join(".wasmig"),
        }
    }

    /// Whether this project works in a private directory (untrusted mode).
    pub fn is_untrusted(&self) -> bool {
        self.private_work_dir.is_some()
    }

    /// The project for an untrusted run: its working directory a new private one outside
    /// the checkout, so nothing the checkout holds under `.wasmig/` is used.
    ///
    /// # Errors
    /// I/O errors making the directory.
    pub fn untrusted(mut self) -> std::io::Result<Self> {
        if self.private_work_dir.is_none() {
            self.private_work_dir = Some(crate::untrusted::PrivateDir::new()?);
            self.ceilings = self.ceilings.or_defaults();
        }
        Ok(self)
    }

    /// The operator's ceilings on the limits this project's files set (in untrusted mode,
    /// the defaults where the operator set none).
    pub fn ceilings(&self) -> &crate::ceilings::Ceilings {
        &self.ceilings
    }

    /// `wasmig.toml`'s sandbox settings, lowered to the operator's ceilings.
    pub fn sandbox_settings(&self) -> SandboxSettings {
        // Silently: a revision's own limits are lowered (and warned about) per revision.
        self.ceilings.clamp(self.config.sandbox, None)
    }

    /// The compile cache directory.
    pub fn cache_dir(&self) -> PathBuf {
        if let Some(dir) = std::env::var_os("WASMIG_CACHE_DIR") {
            return PathBuf::from(dir);
        }
        match &self.config.cache_dir {
            Some(dir) => self.root.join(dir),
            None => self.work_dir().join("cache"),
        }
    }

    /// Resolves the database URL; the second value is true for the embedded default.
    ///
    /// # Errors
    /// [`crate::db::DbError::InvalidUrl`] for a malformed URL.
    pub fn database_url(&self, flag: Option<&str>) -> anyhow::Result<(DatabaseUrl, bool)> {
        let chosen = flag
            .map(str::to_owned)
            .or_else(|| self.env_var("DATABASE_URL"))
            .or_else(|| self.config.database_url.clone());
        match chosen {
            Some(raw) => {
                let url = DatabaseUrl::parse(&raw)?;
                // A relative SQLite path is relative to the project, not the shell's directory.
                Ok((
                    match url {
                        DatabaseUrl::Sqlite { path } if path.is_relative() => DatabaseUrl::Sqlite {
                            path: self.root.join(path),
                        },
                        other => other,
                    },
                    false,
                ))
            }
            None => Ok((
                DatabaseUrl::Sqlite {
                    path: self.root.join(&self.config.default_sqlite_file),
                },
                true,
            )),
        }
    }
}

/// Reads [`DOT_ENV_VARIABLES`] from a `.env` file without touching the process
/// environment. A missing file is normal; an unparsable one is skipped with a warning.
fn read_dot_env(root: &Path, path: &Path) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    if path.symlink_metadata().is_ok()
        && let Err(e) = crate::confined::resolve(root, path)
    {
        tracing::warn!("ignoring {}: {e}", path.display());
        return found;
    }
    let entries = match dotenvy::from_path_iter(path) {
        Ok(entries) => entries,
        Err(e) if e.not_found() => return found,
        Err(e) => {
            tracing::warn!("ignoring {}: {e}", path.display());
            return found;
        }
    };
    for entry in entries {
        match entry {
            Ok((name, value)) => {
                if DOT_ENV_VARIABLES.contains(&name.as_str()) && !value.trim().is_empty() {
                    found.insert(name, value);
                }
            }
            Err(e) => {
                tracing::warn!("ignoring the rest of {}: {e}", path.display());
                break;
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest overriding the deadline and the memory cap.
    fn overriding(timeout: Option<f64>, memory: Option<u64>) -> crate::revision::Manifest {
        let mut manifest: crate::revision::Manifest = toml::from_str(
            "revision = 'x'\nmessage = 'm'\ncreated = '2026-01-01T00:00:00Z'\nkind = 'wasm'",
        )
        .unwrap();
        manifest.timeout_secs = timeout;
        manifest.memory_limit_mib = memory;
        manifest
    }

    #[test]
    fn empty_config_has_documented_defaults() {
        let c = Config::default();
        assert_eq!(c.versions_dir, PathBuf::from("versions"));
        assert_eq!(c.sandbox.memory_limit_mib, 512);
        assert_eq!(c.sandbox.timeout(), Duration::from_secs(600));
        assert_eq!(c.file_template, DEFAULT_FILE_TEMPLATE);
    }

    #[test]
    fn dot_env_gives_only_the_database_url_and_log_level_and_never_sets_the_environment() {
        let dir = std::env::temp_dir().join(format!(
            "wasmig-unit-{}-dot-env-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(".env");
        std::fs::write(
            &path,
            "DATABASE_URL=sqlite:from-dot-env.db\nLOG_LEVEL=debug\n\
             WASMIG_CACHE_KEY=/project/evil.key\nXDG_CACHE_HOME=/project\n\
             WASMIG_UNIT_DOT_ENV_PROBE=1\n",
        )
        .unwrap();
        let found = read_dot_env(&dir, &path);
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            [
                (
                    "DATABASE_URL".to_owned(),
                    "sqlite:from-dot-env.db".to_owned()
                ),
                ("LOG_LEVEL".to_owned(), "debug".to_owned()),
            ]
        );
        assert!(std::env::var_os("WASMIG_UNIT_DOT_ENV_PROBE").is_none());
        assert!(read_dot_env(&dir, &dir.join("missing.env")).is_empty());
    }

    #[test]
    fn sandbox_limits_out_of_range_are_refused_before_they_can_overflow() {
        let manifest = Path::new("versions/x/migration.toml");
        let defaults = SandboxSettings::default();
        for (timeout, memory, setting) in [
            (Some(f64::INFINITY), None, "timeout_secs = inf"),
            (Some(f64::NAN), None, "timeout_secs = NaN"),
            (Some(1e300), None, "timeout_secs = 1e300"),
            (Some(MAX_TIMEOUT_SECS + 1.0), None, "timeout_secs = 604801"),
            (Some(0.0), None, "timeout_secs = 0"),
            (Some(-1.0), None, "timeout_secs = -1"),
            (None, Some(0), "memory_limit_mib = 0"),
            (
                None,
                Some(u64::MAX),
                "memory_limit_mib = 18446744073709551615",
            ),
            (
                None,
                Some(MAX_MEMORY_LIMIT_MIB + 1),
                "memory_limit_mib = 65537",
            ),
        ] {
            let err = defaults
                .with_overrides(&overriding(timeout, memory), manifest)
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("invalid manifest versions/x/migration.toml: ")
                    && err.contains(setting)
                    && err.contains("out of range"),
                "{err}"
            );
        }
        let most = defaults
            .with_overrides(
                &overriding(Some(MAX_TIMEOUT_SECS), Some(MAX_MEMORY_LIMIT_MIB)),
                manifest,
            )
            .unwrap();
        assert_eq!(most.timeout(), Duration::from_secs(7 * 24 * 3600));
        assert_eq!(most.memory_limit_bytes(), 64 << 30);
        let fraction = defaults
            .with_overrides(&overriding(Some(0.25), None), manifest)
            .unwrap();
        assert_eq!(fraction.timeout(), Duration::from_millis(250));
        assert_eq!(fraction.memory_limit_bytes(), 512 << 20);

        // Unchecked values still cannot panic.
        let wild = SandboxSettings {
            memory_limit_mib: u64::MAX,
            timeout_secs: f64::INFINITY,
            ..SandboxSettings::default()
        };
        assert_eq!(wild.timeout(), Duration::from_secs(7 * 24 * 3600));
        assert_eq!(wild.memory_limit_bytes(), 64 << 30);
    }

    #[test]
    fn wasmig_toml_sandbox_limits_out_of_range_are_config_errors() {
        let dir = std::env::temp_dir().join(format!(
            "wasmig-unit-{}-limits-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        for (sandbox, needle) in [
            ("timeout_secs = 1e300", "sandbox.timeout_secs = "),
            ("timeout_secs = inf", "sandbox.timeout_secs = inf"),
            (
                "memory_limit_mib = 9223372036854775807",
                "sandbox.memory_limit_mib = 9223372036854775807",
            ),
        ] {
            std::fs::write(dir.join(CONFIG_FILE), format!("[sandbox]\n{sandbox}\n")).unwrap();
            let err = Project::load(&dir).unwrap_err().to_string();
            assert!(
                err.contains("wasmig.toml: ")
                    && err.contains(needle)
                    && err.contains("out of range"),
                "{sandbox}: {err}"
            );
        }
        std::fs::write(dir.join(CONFIG_FILE), "[sandbox]\ntimeout_secs = 0.5\n").unwrap();
        let project = Project::load(&dir).unwrap();
        assert_eq!(project.config.sandbox.timeout(), Duration::from_millis(500));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<Config>("databse_url = 'x'").unwrap_err();
        assert!(err.to_string().contains("databse_url"), "{err}");
    }
}

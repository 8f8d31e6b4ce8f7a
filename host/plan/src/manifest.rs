//! A revision's manifest (`migration.toml`): its fields, their validation, revision ids,
//! and the pinned checksum of what a revision runs ([`Artifact::checksum`]).
//!
//! Pure data: parsing text, no file system. Loading a project's revisions from disk, and
//! the copies stored in the database, is the `wasmig` library's `revision` module.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::capability::{Capabilities, Capability};
use crate::error::ConfigError;
use crate::graph::Direction;

/// The longest `timeout_secs` accepted (7 days): a deadline must be representable as an
/// instant, and a step that needs longer is better run outside a migration.
pub const MAX_TIMEOUT_SECS: f64 = 7.0 * 24.0 * 3600.0;

/// The manifest file name inside a revision directory.
pub const MANIFEST: &str = "migration.toml";

/// How a revision is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `up.sql` and `down.sql`.
    Sql,
    /// A Rust crate using the `wasmig-guest` SDK, built to a component by `wasmig build`.
    Rust,
    /// `migration.py` using the Python SDK, built with componentize-py.
    Python,
    /// `migration.js` using the JavaScript SDK, built with jco (QuickJS).
    Js,
    /// `migration.c` using the C SDK, built with clang for wasm32-wasi.
    C,
    /// `migration.go` (and `go.mod`) using the Go SDK, built with Go for `wasip1`.
    Go,
    /// A prebuilt component from any language.
    Wasm,
}

impl Kind {
    /// Whether `wasmig build` makes this kind's component from source (into
    /// `.wasmig/build/<rev>.wasm`).
    pub fn is_built(self) -> bool {
        matches!(
            self,
            Kind::Rust | Kind::Python | Kind::Js | Kind::C | Kind::Go
        )
    }
}

/// How a revision uses transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TransactionMode {
    /// The revision and its version-table update commit together (the default).
    #[default]
    PerMigration,
    /// SQL revisions only: each statement of the script runs on its own, autocommitted
    /// (for `CREATE INDEX CONCURRENTLY` and the like); the version-table update follows in a
    /// transaction of its own. A failure part-way is not rolled back: the revision is
    /// recorded as failed until `wasmig resolve`.
    None,
    /// Component revisions only: each batch (one call of `upgrade`/`downgrade`, see the
    /// WIT's `batch` interface) commits on its own together with its checkpoint; an
    /// interrupted run resumes from the last checkpoint, and the version-table update
    /// commits with the last batch.
    Batched,
}

impl TransactionMode {
    /// The mode as `migration.toml` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            TransactionMode::PerMigration => "per-migration",
            TransactionMode::None => "none",
            TransactionMode::Batched => "batched",
        }
    }
}

/// One name or several (`x = "a"` or `x = ["a", "b"]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single name.
    One(String),
    /// Several names.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The names as a list (an empty string is no name).
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) if s.is_empty() => Vec::new(),
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }

    /// `None` for an empty list, one name as a string, several as a list.
    pub fn from_vec(mut names: Vec<String>) -> Option<Self> {
        match names.len() {
            0 => None,
            1 => names.pop().map(OneOrMany::One),
            _ => Some(OneOrMany::Many(names)),
        }
    }
}

/// `migration.toml`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The revision id.
    pub revision: String,
    /// The revision(s) this one follows; absent for the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_revision: Option<OneOrMany>,
    /// Branch labels this revision declares (Alembic's `branch_labels`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch_labels: Option<OneOrMany>,
    /// Revisions or branch labels that must be applied first (Alembic's `depends_on`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<OneOrMany>,
    /// What the revision does.
    pub message: String,
    /// When it was created, RFC 3339 UTC.
    pub created: String,
    /// How it is written.
    pub kind: Kind,
    /// Transaction handling (the upgrade's, and the downgrade's unless
    /// `downgrade_transaction` says otherwise).
    #[serde(default)]
    pub transaction: TransactionMode,
    /// SQL revisions only: the downgrade's transaction handling where it differs from the
    /// upgrade's (`"per-migration"` or `"none"`), as some tools set it per script (dbmate's
    /// per-block `transaction:false`, a `-- no-transaction` down file). See
    /// [`Manifest::transaction_for`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downgrade_transaction: Option<TransactionMode>,
    /// The component file of a `wasm` revision, relative to the revision directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<PathBuf>,
    /// Wall-clock deadline for this revision, in seconds (overrides wasmig.toml).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<f64>,
    /// Memory cap for this revision, in MiB (overrides wasmig.toml).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit_mib: Option<u64>,
    /// For `transaction = "batched"`: the most batches one run may commit before it stops
    /// (the checkpoint is kept; the next run resumes). Overrides wasmig.toml's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batches: Option<u64>,
    /// For `transaction = "batched"`: the longest one run may spend on the step, in
    /// seconds, across its batches (each batch also has `timeout_secs`). Overrides
    /// wasmig.toml's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batched_timeout_secs: Option<f64>,
    /// PostgreSQL `lock_timeout` for this revision's statements, in seconds (overrides
    /// wasmig.toml's `[timeouts]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_timeout_secs: Option<f64>,
    /// PostgreSQL `statement_timeout` for this revision's statements, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement_timeout_secs: Option<f64>,
    /// How many times a step that failed on `lock_timeout` (55P03) is tried again, after a
    /// back-off with jitter (overrides wasmig.toml's `[timeouts]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_timeout_retries: Option<u32>,
    /// What the revision's SQL may do (`["read", "write"]`); every statement needing
    /// another capability is refused before it runs, in every mode. Absent: whatever the
    /// mode allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<Capability>>,
    /// Where `wasmig import` took the revision from: the tool, the migration's version and
    /// its file (`"diesel 2020-01-01-000000_create_users/"`). Informational only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported_from: Option<String>,
    /// `wasmig lint`'s settings for this revision (`[[lint.ignore]]`).
    #[serde(default, skip_serializing_if = "LintManifest::is_empty")]
    pub lint: LintManifest,
    /// For `transaction = "batched"` on PostgreSQL: the upgrade's walk split into key
    /// ranges that several workers run at once (`[partitions]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<Partitions>,
}

/// A batched revision's `[partitions]`: its upgrade walks `count` key ranges, each a walk of
/// its own with its own checkpoint, claimed by the workers of `wasmig up --workers N` and
/// of any other `wasmig up` on the same database.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Partitions {
    /// How many ranges (1 to [`MAX_PARTITIONS`]).
    pub count: u32,
    /// A query returning one row of two 64-bit integer columns, the least and greatest key
    /// of the walk (`SELECT min(id), max(id) FROM people`), run once as the step begins;
    /// the ranges split that span evenly, the first and last open-ended.
    pub bounds: String,
}

/// The most partitions a revision may have.
pub const MAX_PARTITIONS: u32 = 1024;

/// A revision's `[lint]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LintManifest {
    /// Rules `wasmig lint` does not report for this revision, each with its reason.
    #[serde(default)]
    pub ignore: Vec<LintIgnore>,
}

impl LintManifest {
    /// Whether nothing is set (so a manifest without it is written without it).
    pub fn is_empty(&self) -> bool {
        self.ignore.is_empty()
    }
}

/// One `[[lint.ignore]]`: a rule this revision may break, and why that is safe here.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LintIgnore {
    /// The rule's name (`ban-drop-column`, `non-atomic-revision`...).
    pub rule: String,
    /// Why the operation is safe in this revision (required, shown in the report).
    pub reason: String,
}

impl Manifest {
    /// The timeouts this manifest sets (unset ones fall back to wasmig.toml).
    pub fn timeouts(&self) -> StatementTimeouts {
        StatementTimeouts {
            lock_timeout_secs: self.lock_timeout_secs,
            statement_timeout_secs: self.statement_timeout_secs,
            lock_timeout_retries: self.lock_timeout_retries,
        }
    }

    /// The capabilities the revision declares (`None`: it declares none, so it is held to
    /// what the mode allows).
    pub fn declared_capabilities(&self) -> Option<Capabilities> {
        self.capabilities
            .as_ref()
            .map(|list| list.iter().copied().collect())
    }

    /// How a step of this revision in `direction` uses transactions: `transaction`, but a
    /// downgrade's `downgrade_transaction` where it is set.
    pub fn transaction_for(&self, direction: Direction) -> TransactionMode {
        match (direction, self.downgrade_transaction) {
            (Direction::Downgrade, Some(mode)) => mode,
            _ => self.transaction,
        }
    }

    /// The key of `migration.toml` that sets [`Manifest::transaction_for`] `direction`:
    /// `downgrade_transaction` where it is set for a downgrade, else `transaction`.
    pub fn transaction_key(&self, direction: Direction) -> &'static str {
        match (direction, self.downgrade_transaction) {
            (Direction::Downgrade, Some(_)) => "downgrade_transaction",
            _ => "transaction",
        }
    }

    /// The down revisions as a list.
    pub fn down_revisions(&self) -> Vec<String> {
        self.down_revision
            .as_ref()
            .map(OneOrMany::to_vec)
            .unwrap_or_default()
    }
}

/// Parses and validates a manifest's text; `origin` names where it came from.
pub fn parse_manifest(text: &str, origin: &str) -> Result<Manifest, ConfigError> {
    let manifest: Manifest = toml::from_str(text)
        .map_err(|e| ConfigError::new(format!("invalid manifest {origin}: {e}")))?;
    if !is_valid_id(&manifest.revision) {
        return Err(ConfigError::new(format!(
            "invalid manifest {origin}: revision id `{}` must be non-empty and use only letters, digits, `_` and `-`",
            manifest.revision
        )));
    }
    check_transaction(&manifest, origin)?;
    check_partitions(&manifest, origin)?;
    if let Some(component) = &manifest.component {
        check_inside(component, "component", origin)?;
    }
    Ok(manifest)
}

/// Refuses a path that a project file names (`component` in a manifest; `versions_dir`,
/// `cache_dir`, `default_sqlite_file` in `wasmig.toml`) unless it stays inside the directory
/// it is relative to: no absolute path, no `..`. Project files are written by whoever
/// authors the migrations, who must not make wasmig read or write elsewhere. (A lexical
/// check: symbolic links are the file-access layer's to refuse.)
///
/// # Errors
/// [`ConfigError`] naming `setting`, `origin` and the path.
pub fn check_inside(path: &Path, setting: &str, origin: &str) -> Result<(), ConfigError> {
    use std::path::Component;
    let escapes = path.components().any(|c| {
        matches!(
            c,
            Component::ParentDir | Component::RootDir | Component::Prefix(_)
        )
    });
    if escapes || path.as_os_str().is_empty() {
        return Err(ConfigError::new(format!(
            "invalid {origin}: {setting} = {:?} must be a relative path inside the project, without `..`; move the file into the project",
            path.display().to_string()
        )));
    }
    Ok(())
}

/// Refuses `[partitions]` outside batched revisions, and a count or bounds query out of
/// range.
pub fn check_partitions(manifest: &Manifest, origin: &str) -> Result<(), ConfigError> {
    let Some(p) = &manifest.partitions else {
        return Ok(());
    };
    if manifest.transaction != TransactionMode::Batched {
        return Err(ConfigError::new(format!(
            "invalid manifest {origin}: [partitions] splits a batched walk into key ranges, and this revision is not `transaction = \"batched\"`; set it, or remove [partitions]"
        )));
    }
    if p.count == 0 || p.count > MAX_PARTITIONS {
        return Err(ConfigError::new(format!(
            "invalid manifest {origin}: [partitions] count = {} is not between 1 and {MAX_PARTITIONS}",
            p.count
        )));
    }
    if p.bounds.trim().is_empty() {
        return Err(ConfigError::new(format!(
            "invalid manifest {origin}: [partitions] bounds is empty; give the query of the walk's least and greatest key, such as `SELECT min(id), max(id) FROM people`"
        )));
    }
    Ok(())
}

/// Refuses `transaction = "none"` outside SQL revisions, and `"batched"` in them.
pub fn check_transaction(manifest: &Manifest, origin: &str) -> Result<(), ConfigError> {
    if manifest.transaction == TransactionMode::Batched && manifest.kind == Kind::Sql {
        // Batches are calls of a component's export; a script has no place to stop and
        // resume from.
        return Err(ConfigError::new(format!(
            "invalid manifest {origin}: `transaction = \"batched\"` is for component revisions, whose migration calls `batch.next-batch`; a SQL revision runs its script in one transaction (`per-migration`) or statement by statement (`none`)"
        )));
    }
    if let Some(mode) = manifest.downgrade_transaction
        && (manifest.kind != Kind::Sql || mode == TransactionMode::Batched)
    {
        // Only a script has two ways to run; a component's downgrade runs as its upgrade.
        return Err(ConfigError::new(format!(
            "invalid manifest {origin}: `downgrade_transaction = \"{}\"` is for SQL revisions, as `\"per-migration\"` or `\"none\"` (a downgrade script that must run statement by statement, or in one transaction, where the upgrade does not); remove it{}",
            mode.as_str(),
            if manifest.kind == Kind::Sql {
                " or set one of those"
            } else {
                ": a component revision's downgrade runs as its `transaction` says"
            }
        )));
    }
    if manifest.transaction == TransactionMode::None && manifest.kind != Kind::Sql {
        // A guest's statements go through one session; running them autocommitted would
        // need a second kind of session in the sandbox, and no use case asks for it yet.
        return Err(ConfigError::new(format!(
            "invalid manifest {origin}: `transaction = \"none\"` is only for SQL revisions; a {} revision always runs in one transaction (remove the setting, or move the statements that cannot run in a transaction into a SQL revision)",
            kind_name(manifest.kind)
        )));
    }
    Ok(())
}

impl Kind {
    /// Every kind, in the order the CLI lists them.
    pub const ALL: [Kind; 7] = [
        Kind::Sql,
        Kind::Rust,
        Kind::Python,
        Kind::Js,
        Kind::C,
        Kind::Go,
        Kind::Wasm,
    ];

    /// `sql`, `rust`, `python`, `js`, `c`, `go` or `wasm`: the manifest's spelling.
    pub fn name(self) -> &'static str {
        kind_name(self)
    }
}

impl std::str::FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown kind `{s}`; one of sql, rust, python, js, c, go, wasm"))
    }
}

/// `sql`, `rust`, `python`, `js`, `c`, `go` or `wasm`.
pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Sql => "sql",
        Kind::Rust => "rust",
        Kind::Python => "python",
        Kind::Js => "js",
        Kind::C => "c",
        Kind::Go => "go",
        Kind::Wasm => "wasm",
    }
}

/// Whether an id is usable (also as a file name and in SQL identifiers we generate).
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// What runs for one revision.
#[derive(Debug, Clone)]
pub enum Artifact {
    /// A SQL revision's scripts.
    Sql {
        /// `up.sql`.
        up: String,
        /// `down.sql`.
        down: String,
    },
    /// A component's bytes.
    Component {
        /// The file it came from.
        path: PathBuf,
        /// The bytes.
        bytes: Vec<u8>,
    },
}

impl Artifact {
    /// The pinned checksum: hex SHA-256 of the component bytes, or of
    /// `up.sql` bytes, one `0x00` byte, and `down.sql` bytes for SQL revisions.
    pub fn checksum(&self) -> String {
        let mut hasher = Sha256::new();
        match self {
            Artifact::Sql { up, down } => {
                hasher.update(up.as_bytes());
                hasher.update([0u8]);
                hasher.update(down.as_bytes());
            }
            Artifact::Component { bytes, .. } => hasher.update(bytes),
        }
        hex::encode(hasher.finalize())
    }
}

/// PostgreSQL's `lock_timeout` and `statement_timeout` for the statements of a step, in
/// seconds (`[timeouts]` in wasmig.toml, or per revision in its manifest). Not wasmig's own
/// migration lock, which `--lock-timeout` governs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StatementTimeouts {
    /// How long a statement may wait for a table or row lock before failing (55P03).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_timeout_secs: Option<f64>,
    /// How long one statement may run before the server cancels it (57014).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement_timeout_secs: Option<f64>,
    /// How many times a step in one transaction that failed waiting for a lock (55P03,
    /// `lock_timeout`) is rolled back and tried again, after a back-off with jitter (0.5 s,
    /// 1 s, 2 s… up to 30 s, each between half and all of it). At most
    /// [`MAX_LOCK_TIMEOUT_RETRIES`]; none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_timeout_retries: Option<u32>,
}

/// The most `lock_timeout_retries` accepted.
pub const MAX_LOCK_TIMEOUT_RETRIES: u32 = 100;

impl StatementTimeouts {
    /// These defaults with a revision's overrides, checked.
    ///
    /// # Errors
    /// [`ConfigError`] naming `file` and the setting out of range.
    pub fn with_overrides(
        &self,
        overrides: &StatementTimeouts,
        file: &Path,
    ) -> Result<StatementTimeouts, ConfigError> {
        let merged = StatementTimeouts {
            lock_timeout_secs: overrides.lock_timeout_secs.or(self.lock_timeout_secs),
            statement_timeout_secs: overrides
                .statement_timeout_secs
                .or(self.statement_timeout_secs),
            lock_timeout_retries: overrides.lock_timeout_retries.or(self.lock_timeout_retries),
        };
        if let Some(n) = merged.lock_timeout_retries
            && n > MAX_LOCK_TIMEOUT_RETRIES
        {
            return Err(ConfigError::new(format!(
                "invalid {}: lock_timeout_retries = {n} is out of range; use at most {MAX_LOCK_TIMEOUT_RETRIES}",
                file.display()
            )));
        }
        for (name, value) in [
            ("lock_timeout_secs", merged.lock_timeout_secs),
            ("statement_timeout_secs", merged.statement_timeout_secs),
        ] {
            if let Some(v) = value
                && !(v.is_finite() && v > 0.0 && v <= MAX_TIMEOUT_SECS)
            {
                return Err(ConfigError::new(format!(
                    "invalid {}: {name} = {v:?} is out of range; use a number of seconds above 0 and at most {MAX_TIMEOUT_SECS} (7 days)",
                    file.display()
                )));
            }
        }
        Ok(merged)
    }

    /// The lock timeout, if set.
    pub fn lock(&self) -> Option<Duration> {
        self.lock_timeout_secs.map(Duration::from_secs_f64)
    }

    /// The statement timeout, if set.
    pub fn statement(&self) -> Option<Duration> {
        self.statement_timeout_secs.map(Duration::from_secs_f64)
    }

    /// Whether either is set.
    pub fn any(&self) -> bool {
        self.lock_timeout_secs.is_some() || self.statement_timeout_secs.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_checksum_is_pinned() {
        let a = Artifact::Sql {
            up: "CREATE TABLE t (x int);".into(),
            down: "DROP TABLE t;".into(),
        };
        // sha256("CREATE TABLE t (x int);\0DROP TABLE t;"), pinned: changing it breaks every
        // existing history table.
        assert_eq!(a.checksum(), {
            let mut h = Sha256::new();
            h.update(b"CREATE TABLE t (x int);\0DROP TABLE t;");
            hex::encode(h.finalize())
        });
        assert_eq!(a.checksum().len(), 64);
    }

    #[test]
    fn manifests_accept_one_or_many_down_revisions() {
        let m: Manifest = toml::from_str(
            "revision='b'\ndown_revision='a'\nmessage='m'\ncreated='2026-01-01T00:00:00Z'\nkind='sql'",
        )
        .unwrap();
        assert_eq!(m.down_revisions(), ["a"]);
        let m: Manifest = toml::from_str(
            "revision='c'\ndown_revision=['a','b']\nmessage='m'\ncreated='2026-01-01T00:00:00Z'\nkind='rust'",
        )
        .unwrap();
        assert_eq!(m.down_revisions(), ["a", "b"]);
        assert!(
            toml::from_str::<Manifest>("revision='c'\nmessage='m'\ncreated='x'\nkind='cobol'")
                .is_err()
        );
    }

    #[test]
    fn transaction_none_is_for_sql_revisions_only() {
        let path = "a/migration.toml";
        let base =
            "revision='a'\nmessage='m'\ncreated='2026-01-01T00:00:00Z'\ntransaction='none'\n";
        let sql: Manifest = toml::from_str(&format!("{base}kind='sql'")).unwrap();
        assert_eq!(sql.transaction, TransactionMode::None);
        assert!(check_transaction(&sql, path).is_ok());
        let wasm: Manifest = toml::from_str(&format!("{base}kind='wasm'")).unwrap();
        let err = check_transaction(&wasm, path).unwrap_err();
        assert!(err.message.contains("only for SQL revisions"), "{err}");
    }

    #[test]
    fn a_sql_revisions_downgrade_may_have_a_transaction_mode_of_its_own() {
        let path = "a/migration.toml";
        let base = "revision='a'\nmessage='m'\ncreated='2026-01-01T00:00:00Z'\n";
        let both: Manifest =
            toml::from_str(&format!("{base}kind='sql'\ntransaction='none'\n")).unwrap();
        assert_eq!(
            both.transaction_for(Direction::Downgrade),
            TransactionMode::None
        );
        let split: Manifest = toml::from_str(&format!(
            "{base}kind='sql'\ntransaction='none'\ndowngrade_transaction='per-migration'\n"
        ))
        .unwrap();
        assert!(check_transaction(&split, path).is_ok());
        assert_eq!(
            split.transaction_for(Direction::Upgrade),
            TransactionMode::None
        );
        assert_eq!(
            split.transaction_for(Direction::Downgrade),
            TransactionMode::PerMigration
        );
        // Written back as read; absent when unset.
        let written = toml::to_string(&split).unwrap();
        assert!(
            written.contains("downgrade_transaction = \"per-migration\""),
            "{written}"
        );
        assert!(
            !toml::to_string(&both)
                .unwrap()
                .contains("downgrade_transaction")
        );
        for (kind, mode, said) in [
            ("wasm", "none", "runs as its `transaction` says"),
            ("rust", "per-migration", "runs as its `transaction` says"),
            ("sql", "batched", "or set one of those"),
        ] {
            let m: Manifest = toml::from_str(&format!(
                "{base}kind='{kind}'\ndowngrade_transaction='{mode}'\n"
            ))
            .unwrap();
            let err = check_transaction(&m, path).unwrap_err();
            assert!(
                err.message.contains("is for SQL revisions") && err.message.contains(said),
                "{kind} {mode}: {err}"
            );
        }
    }

    #[test]
    fn transaction_batched_is_for_component_revisions_only() {
        let path = "a/migration.toml";
        let base =
            "revision='a'\nmessage='m'\ncreated='2026-01-01T00:00:00Z'\ntransaction='batched'\n";
        let wasm: Manifest = toml::from_str(&format!("{base}kind='wasm'")).unwrap();
        assert_eq!(wasm.transaction, TransactionMode::Batched);
        assert!(check_transaction(&wasm, path).is_ok());
        let sql: Manifest = toml::from_str(&format!("{base}kind='sql'")).unwrap();
        let err = check_transaction(&sql, path).unwrap_err();
        assert!(err.message.contains("for component revisions"), "{err}");
    }

    #[test]
    fn partitions_are_for_batched_revisions_with_a_count_in_range_and_a_query() {
        let base = "revision='a'\nmessage='m'\ncreated='2026-01-01T00:00:00Z'\nkind='rust'\n";
        let parts = |count: u32, bounds: &str| {
            format!("[partitions]\ncount = {count}\nbounds = '{bounds}'")
        };
        let ok = parse_manifest(
            &format!(
                "{base}transaction='batched'\n{}",
                parts(16, "SELECT min(id), max(id) FROM t")
            ),
            "a/migration.toml",
        )
        .unwrap();
        assert_eq!(ok.partitions.unwrap().count, 16);
        for (text, says) in [
            (
                format!("{base}{}", parts(4, "SELECT 1, 2")),
                "is not `transaction = \"batched\"`",
            ),
            (
                format!("{base}transaction='batched'\n{}", parts(0, "SELECT 1, 2")),
                "count = 0",
            ),
            (
                format!(
                    "{base}transaction='batched'\n{}",
                    parts(1025, "SELECT 1, 2")
                ),
                "count = 1025",
            ),
            (
                format!("{base}transaction='batched'\n{}", parts(4, " ")),
                "bounds is empty",
            ),
        ] {
            let err = parse_manifest(&text, "a/migration.toml").unwrap_err();
            assert!(err.message.contains(says), "{err}");
            assert!(err.message.contains("a/migration.toml"), "{err}");
        }
    }

    #[test]
    fn capabilities_are_read_and_an_unknown_one_names_the_file() {
        let base = "revision='b'\nmessage='m'\ncreated='2026-01-01T00:00:00Z'\nkind='sql'";
        let m = parse_manifest(base, "b/migration.toml").unwrap();
        assert_eq!(m.declared_capabilities(), None);
        let m = parse_manifest(&format!("{base}\ncapabilities = ['read', 'ddl']"), "x").unwrap();
        let declared = m.declared_capabilities().unwrap();
        assert!(declared.has(Capability::Read) && declared.has(Capability::Ddl));
        assert!(!declared.has(Capability::Write));
        let none = parse_manifest(&format!("{base}\ncapabilities = []"), "x").unwrap();
        assert_eq!(none.declared_capabilities(), Some(Capabilities::NONE));
        let e = parse_manifest(
            &format!("{base}\ncapabilities = ['read', 'dml']"),
            "versions/b/migration.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("versions/b/migration.toml") && e.contains("dml"),
            "{e}"
        );
    }

    #[test]
    fn ids_are_checked() {
        assert!(is_valid_id("3f2a1c9b7d10"));
        assert!(!is_valid_id("a b"));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("x;drop"));
    }

    #[test]
    fn paths_in_project_files_stay_inside_the_project() {
        for good in ["migration.wasm", "build/x.wasm", "./a/b"] {
            assert!(
                check_inside(Path::new(good), "component", "m").is_ok(),
                "{good}"
            );
        }
        for bad in ["/etc/passwd", "../other/x.wasm", "a/../../b", ""] {
            let err = check_inside(Path::new(bad), "component", "m").unwrap_err();
            assert!(err.message.contains("inside the project"), "{bad}: {err}");
        }
        let base = "revision='a'\nmessage='m'\ncreated='2026-01-01T00:00:00Z'\nkind='wasm'\n";
        let err = parse_manifest(
            &format!("{base}component='../../secret.wasm'"),
            "a/migration.toml",
        )
        .unwrap_err();
        assert!(err.message.contains("component"), "{err}");
    }
}

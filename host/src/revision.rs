//! Revisions on disk: the manifest (`migration.toml`), loading a project's revisions, their
//! artifacts (SQL text or component bytes) and checksums.
//!
//! A revision is a directory under the versions directory holding `migration.toml` and, by
//! kind: `up.sql` + `down.sql` (sql), a Cargo crate (rust, built by `artifact`), a Python,
//! JavaScript or C source (built by `toolchain`), or a prebuilt component (wasm). A revision whose files left the project (an older release was
//! deployed) can instead come from the copy the database stored when it was applied
//! ([`Revision::from_stored`]); only `wasmig down` loads those.
//!
//! Not here: building (`artifact`), planning (`graph`), reading the stored copy (`db`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::db::{ARTIFACT_TABLE, StoredArtifact};
use crate::error::{ConfigError, GraphError};
use crate::graph::Node;

/// The manifest file name inside a revision directory.
pub const MANIFEST: &str = "migration.toml";

/// How a revision is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
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
    /// A prebuilt component from any language.
    Wasm,
}

impl Kind {
    /// Whether `wasmig build` makes this kind's component from source (into
    /// `.wasmig/build/<rev>.wasm`).
    pub fn is_built(self) -> bool {
        matches!(self, Kind::Rust | Kind::Python | Kind::Js | Kind::C)
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
    /// Transaction handling.
    #[serde(default)]
    pub transaction: TransactionMode,
    /// The component file of a `wasm` revision, relative to the revision directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<PathBuf>,
    /// Wall-clock deadline for this revision, in seconds (overrides wasmig.toml).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<f64>,
    /// Memory cap for this revision, in MiB (overrides wasmig.toml).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit_mib: Option<u64>,
    /// PostgreSQL `lock_timeout` for this revision's statements, in seconds (overrides
    /// wasmig.toml's `[timeouts]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_timeout_secs: Option<f64>,
    /// PostgreSQL `statement_timeout` for this revision's statements, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement_timeout_secs: Option<f64>,
}

impl Manifest {
    /// The timeouts this manifest sets (unset ones fall back to wasmig.toml).
    pub fn timeouts(&self) -> crate::config::StatementTimeouts {
        crate::config::StatementTimeouts {
            lock_timeout_secs: self.lock_timeout_secs,
            statement_timeout_secs: self.statement_timeout_secs,
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

/// A revision found on disk, or stored in the database.
#[derive(Debug, Clone)]
pub struct Revision {
    /// Its manifest.
    pub manifest: Manifest,
    /// Its directory (for a stored revision: where it would be, which does not exist).
    pub dir: PathBuf,
    /// For a revision whose files are not in the project: the artifact the database stored
    /// when it was applied, which is then what runs and what is verified.
    pub stored: Option<Artifact>,
}

impl Revision {
    /// A revision from the copy stored in the database, for one whose files are not in the
    /// project under `versions_dir`.
    ///
    /// # Errors
    /// [`ConfigError`] when the stored manifest is invalid, names another revision, or the
    /// row lacks the artifact its kind needs.
    pub fn from_stored(versions_dir: &Path, stored: &StoredArtifact) -> Result<Self, ConfigError> {
        let origin = format!("the {ARTIFACT_TABLE} row of {}", stored.revision);
        let manifest = parse_manifest(&stored.manifest, &origin)?;
        if manifest.revision != stored.revision {
            return Err(ConfigError::new(format!(
                "invalid {origin}: its manifest is that of revision `{}`",
                manifest.revision
            )));
        }
        let incomplete = || ConfigError::new(format!("invalid {origin}: its artifact is missing"));
        let artifact = match manifest.kind {
            Kind::Sql => Artifact::Sql {
                up: stored.up_sql.clone().ok_or_else(incomplete)?,
                down: stored.down_sql.clone().ok_or_else(incomplete)?,
            },
            Kind::Rust | Kind::Python | Kind::Js | Kind::C | Kind::Wasm => Artifact::Component {
                path: PathBuf::from(format!("{ARTIFACT_TABLE}/{}", stored.revision)),
                bytes: stored.component.clone().ok_or_else(incomplete)?,
            },
        };
        Ok(Revision {
            dir: versions_dir.join(&stored.revision),
            manifest,
            stored: Some(artifact),
        })
    }

    /// What the database stores for this revision when `artifact` (its artifact) is applied.
    ///
    /// # Errors
    /// [`ConfigError`] when its manifest cannot be read.
    pub fn to_stored(&self, artifact: &Artifact) -> Result<StoredArtifact, ConfigError> {
        let (up_sql, down_sql, component) = match artifact {
            Artifact::Sql { up, down } => (Some(up.clone()), Some(down.clone()), None),
            Artifact::Component { bytes, .. } => (None, None, Some(bytes.clone())),
        };
        let manifest = match &self.stored {
            // Not re-applied in practice (stored revisions are only reverted), but keep the
            // text round-trippable.
            Some(_) => toml::to_string(&self.manifest)
                .map_err(|e| ConfigError::new(format!("revision {}: {e}", self.id())))?,
            None => {
                let path = self.dir.join(MANIFEST);
                std::fs::read_to_string(&path)
                    .map_err(|e| ConfigError::new(format!("cannot read {}: {e}", path.display())))?
            }
        };
        Ok(StoredArtifact {
            revision: self.id().to_owned(),
            kind: kind_name(self.manifest.kind).to_owned(),
            checksum: artifact.checksum(),
            manifest,
            up_sql,
            down_sql,
            component,
            source_checksum: match (
                &self.stored,
                crate::toolchain::toolchain(self.manifest.kind),
            ) {
                (None, Some(_)) => Some(
                    crate::toolchain::source_checksum(self)
                        .map_err(|e| ConfigError::new(format!("revision {}: {e:#}", self.id())))?,
                ),
                _ => None,
            },
        })
    }

    /// The revision id.
    pub fn id(&self) -> &str {
        &self.manifest.revision
    }

    /// The component file of a `wasm` revision, or where `wasmig build` puts the component
    /// of a kind built from source (`rust`, `python`, `js`, `c`).
    pub fn component_path(&self, build_dir: &Path) -> Option<PathBuf> {
        match self.manifest.kind {
            Kind::Sql => None,
            Kind::Wasm => Some(
                self.dir.join(
                    self.manifest
                        .component
                        .clone()
                        .unwrap_or_else(|| PathBuf::from("migration.wasm")),
                ),
            ),
            Kind::Rust | Kind::Python | Kind::Js | Kind::C => {
                Some(build_dir.join(format!("{}.wasm", self.id())))
            }
        }
    }
}

/// Loads every revision under `versions_dir` (each subdirectory with a `migration.toml`).
///
/// # Errors
/// [`ConfigError`] for an unreadable directory or an invalid manifest (naming the file),
/// [`GraphError::Duplicate`] for two revisions with one id.
pub fn load_all(versions_dir: &Path) -> anyhow::Result<Vec<Revision>> {
    let entries = std::fs::read_dir(versions_dir).map_err(|e| {
        ConfigError::new(format!(
            "cannot read the versions directory {}: {e}; run `wasmig init` or fix `versions_dir` in wasmig.toml",
            versions_dir.display()
        ))
    })?;
    let mut revisions: Vec<Revision> = Vec::new();
    for entry in entries {
        let entry = entry
            .map_err(|e| ConfigError::new(format!("reading {}: {e}", versions_dir.display())))?;
        let dir = entry.path();
        let manifest_path = dir.join(MANIFEST);
        if !manifest_path.is_file() {
            continue;
        }
        let manifest = read_manifest(&manifest_path)?;
        if let Some(other) = revisions.iter().find(|r| r.id() == manifest.revision) {
            return Err(GraphError::Duplicate {
                id: manifest.revision,
                first: other.dir.clone(),
                second: dir,
            }
            .into());
        }
        revisions.push(Revision {
            manifest,
            dir,
            stored: None,
        });
    }
    revisions.sort_by(|a, b| a.dir.cmp(&b.dir));
    Ok(revisions)
}

/// Reads and validates one manifest.
///
/// # Errors
/// [`ConfigError`] naming the file.
pub fn read_manifest(path: &Path) -> Result<Manifest, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(format!("cannot read {}: {e}", path.display())))?;
    parse_manifest(&text, &path.display().to_string())
}

/// Parses and validates a manifest's text; `origin` names where it came from.
fn parse_manifest(text: &str, origin: &str) -> Result<Manifest, ConfigError> {
    let manifest: Manifest = toml::from_str(text)
        .map_err(|e| ConfigError::new(format!("invalid manifest {origin}: {e}")))?;
    if !is_valid_id(&manifest.revision) {
        return Err(ConfigError::new(format!(
            "invalid manifest {origin}: revision id `{}` must be non-empty and use only letters, digits, `_` and `-`",
            manifest.revision
        )));
    }
    check_transaction(&manifest, origin)?;
    Ok(manifest)
}

/// Refuses `transaction = "none"` outside SQL revisions, and `"batched"` in them.
fn check_transaction(manifest: &Manifest, origin: &str) -> Result<(), ConfigError> {
    if manifest.transaction == TransactionMode::Batched && manifest.kind == Kind::Sql {
        // Batches are calls of a component's export; a script has no place to stop and
        // resume from.
        return Err(ConfigError::new(format!(
            "invalid manifest {origin}: `transaction = \"batched\"` is for component revisions, whose migration calls `batch.next-batch`; a SQL revision runs its script in one transaction (`per-migration`) or statement by statement (`none`)"
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

/// `sql`, `rust`, `python`, `js`, `c` or `wasm`.
pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Sql => "sql",
        Kind::Rust => "rust",
        Kind::Python => "python",
        Kind::Js => "js",
        Kind::C => "c",
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

/// The planner's view of the revisions.
pub fn nodes(revisions: &[Revision]) -> Vec<Node> {
    revisions
        .iter()
        .map(|r| Node {
            id: r.id().to_owned(),
            down: r.manifest.down_revisions(),
            depends_on: r
                .manifest
                .depends_on
                .as_ref()
                .map(OneOrMany::to_vec)
                .unwrap_or_default(),
            branch_labels: r
                .manifest
                .branch_labels
                .as_ref()
                .map(OneOrMany::to_vec)
                .unwrap_or_default(),
        })
        .collect()
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

/// Checks that a revision's artifact files exist, without reading them (so a run can refuse
/// before its first step rather than stop half-way).
///
/// # Errors
/// As [`read_artifact`].
pub fn check_artifact(revision: &Revision, build_dir: &Path) -> Result<(), ConfigError> {
    if revision.stored.is_some() {
        return Ok(());
    }
    let files = match revision.manifest.kind {
        Kind::Sql => vec![revision.dir.join("up.sql"), revision.dir.join("down.sql")],
        Kind::Wasm | Kind::Rust | Kind::Python | Kind::Js | Kind::C => vec![
            revision
                .component_path(build_dir)
                .expect("components have a path"),
        ],
    };
    match files.iter().find(|f| !f.is_file()) {
        None => Ok(()),
        // Reading gives the precise message (missing, a directory, not readable…).
        Some(_) => read_artifact(revision, build_dir).map(drop),
    }
}

/// Reads a revision's artifact from disk (or, for a stored revision, its stored copy).
///
/// # Errors
/// [`ConfigError`] naming the missing file and what to do (`wasmig build` for Rust).
pub fn read_artifact(revision: &Revision, build_dir: &Path) -> Result<Artifact, ConfigError> {
    if let Some(stored) = &revision.stored {
        return Ok(stored.clone());
    }
    let read = |path: &Path, what: &str| {
        std::fs::read(path).map_err(|e| {
            ConfigError::new(format!(
                "revision {}: cannot read {}: {e}{what}",
                revision.id(),
                path.display(),
            ))
        })
    };
    match revision.manifest.kind {
        Kind::Sql => {
            let text = |name: &str| -> Result<String, ConfigError> {
                let path = revision.dir.join(name);
                String::from_utf8(read(&path, "")?).map_err(|_| {
                    ConfigError::new(format!(
                        "revision {}: {} is not UTF-8",
                        revision.id(),
                        path.display()
                    ))
                })
            };
            Ok(Artifact::Sql {
                up: text("up.sql")?,
                down: text("down.sql")?,
            })
        }
        Kind::Wasm | Kind::Rust | Kind::Python | Kind::Js | Kind::C => {
            let path = revision
                .component_path(build_dir)
                .expect("components have a path");
            let hint = if revision.manifest.kind.is_built() {
                "; run `wasmig build`"
            } else {
                ""
            };
            Ok(Artifact::Component {
                bytes: read(&path, hint)?,
                path,
            })
        }
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
    fn a_stored_copy_round_trips_into_a_revision_with_the_same_artifact() {
        let dir = std::env::temp_dir().join(format!("wasmig-stored-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = "revision='b2'\ndown_revision='a1'\nmessage='m'\ncreated='2026-01-01T00:00:00Z'\nkind='sql'\n";
        std::fs::write(dir.join(MANIFEST), text).unwrap();
        let on_disk = Revision {
            manifest: read_manifest(&dir.join(MANIFEST)).unwrap(),
            dir: dir.clone(),
            stored: None,
        };
        let artifact = Artifact::Sql {
            up: "CREATE TABLE t (x int);".into(),
            down: "DROP TABLE t;".into(),
        };
        let stored = on_disk.to_stored(&artifact).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(stored.manifest, text, "the manifest text as written");
        assert_eq!(
            (stored.kind.as_str(), stored.checksum.as_str()),
            ("sql", artifact.checksum().as_str())
        );

        let back = Revision::from_stored(Path::new("versions"), &stored).unwrap();
        assert_eq!(back.manifest.down_revisions(), ["a1"]);
        assert_eq!(back.dir, Path::new("versions/b2"));
        let read = read_artifact(&back, Path::new("build")).unwrap();
        assert_eq!(read.checksum(), artifact.checksum());

        assert_eq!(stored.source_checksum, None, "a SQL revision has no build");
        let wrong = StoredArtifact {
            revision: "c3".into(),
            ..stored.clone()
        };
        assert!(Revision::from_stored(Path::new("v"), &wrong).is_err());
        let empty = StoredArtifact {
            down_sql: None,
            ..stored
        };
        assert!(Revision::from_stored(Path::new("v"), &empty).is_err());
    }

    #[test]
    fn ids_are_checked() {
        assert!(is_valid_id("3f2a1c9b7d10"));
        assert!(!is_valid_id("a b"));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("x;drop"));
    }
}

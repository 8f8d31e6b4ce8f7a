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

pub use wasmig_plan::manifest::{
    Artifact, Kind, MANIFEST, Manifest, OneOrMany, Partitions, TransactionMode, is_valid_id,
    kind_name, parse_manifest,
};

use crate::config::Project;
use crate::db::{ARTIFACT_TABLE, Database, StoredArtifact};
use crate::error::{ConfigError, GraphError};
use crate::graph::{Direction, Graph, Node, Step};

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
            Kind::Rust | Kind::Python | Kind::Js | Kind::C | Kind::Go | Kind::Wasm => {
                Artifact::Component {
                    path: PathBuf::from(format!("{ARTIFACT_TABLE}/{}", stored.revision)),
                    bytes: stored.component.as_deref().ok_or_else(incomplete)?.to_vec(),
                }
            }
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
        self.stored(artifact.checksum(), up_sql, down_sql, component)
    }

    /// [`Revision::to_stored`], moving a component's bytes out of `artifact` (left empty)
    /// rather than copying them: for a component already loaded, whose bytes are needed
    /// only for the database's copy (18 MB for a Python one).
    ///
    /// # Errors
    /// [`ConfigError`] when its manifest cannot be read.
    pub fn take_stored(&self, artifact: &mut Artifact) -> Result<StoredArtifact, ConfigError> {
        let checksum = artifact.checksum();
        match artifact {
            Artifact::Component { bytes, .. } => {
                self.stored(checksum, None, None, Some(std::mem::take(bytes)))
            }
            Artifact::Sql { .. } => self.to_stored(artifact),
        }
    }

    /// The row for this revision with these contents.
    fn stored(
        &self,
        checksum: String,
        up_sql: Option<String>,
        down_sql: Option<String>,
        component: Option<Vec<u8>>,
    ) -> Result<StoredArtifact, ConfigError> {
        let manifest = match &self.stored {
            // Not re-applied in practice (stored revisions are only reverted), but keep the
            // text round-trippable.
            Some(_) => toml::to_string(&self.manifest)
                .map_err(|e| ConfigError::new(format!("revision {}: {e}", self.id())))?,
            None => {
                let path = self.dir.join(MANIFEST);
                read_text_capped(
                    self.dir.parent().unwrap_or(&self.dir),
                    &path,
                    MAX_MANIFEST_FILE,
                )
                .map_err(|e| ConfigError::new(format!("cannot read {}: {e}", path.display())))?
            }
        };
        Ok(StoredArtifact {
            revision: self.id().to_owned(),
            kind: kind_name(self.manifest.kind).to_owned(),
            checksum,
            manifest,
            up_sql,
            down_sql,
            // Moved, not copied.
            component: component.map(bytes::Bytes::from),
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
    /// of a kind built from source (`rust`, `python`, `js`, `c`, `go`).
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
            Kind::Rust | Kind::Python | Kind::Js | Kind::C | Kind::Go => {
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
        ConfigError::with_next(
            format!(
                "cannot read the versions directory {}: {e}; is `versions_dir` in wasmig.toml right?",
                versions_dir.display()
            ),
            wasmig_plan::NextStep::Init,
        )
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

/// The largest `up.sql` or `down.sql` wasmig reads: a revision's SQL is held in memory to be
/// sent, so a file past this is refused (exit 3) before it is read, not after it filled the
/// host's memory. Data that large belongs in a component that streams it (`copy_in`).
pub const MAX_SQL_FILE: u64 = 64 * 1024 * 1024;

/// The largest `migration.toml` wasmig reads.
pub const MAX_MANIFEST_FILE: u64 = 1024 * 1024;

/// The largest component file wasmig reads; the configured `max_component_mib` (at most
/// 1024) is checked against the bytes read.
pub const MAX_COMPONENT_FILE: u64 = 1024 * 1024 * 1024;

/// Reads a file of at most `cap` bytes, refusing a larger one without reading it whole
/// (also one that grows while it is read, or a device that never ends).
///
/// The file must lie inside `confine` (the versions directory for a revision's files, the
/// build directory for a built component), symbolic links followed: a link out of it is
/// refused, so a committed `up.sql` that links to a secret does not put it in the database.
pub fn read_capped(confine: &Path, path: &Path, cap: u64) -> std::io::Result<Vec<u8>> {
    read_capped_with_metadata(confine, path, cap).map(|(bytes, _)| bytes)
}

/// [`read_capped`], with what the file system says of the file read (from the descriptor
/// read, not the path, which may name another file by now).
pub fn read_capped_with_metadata(
    confine: &Path,
    path: &Path,
    cap: u64,
) -> std::io::Result<(Vec<u8>, std::fs::Metadata)> {
    use std::io::Read as _;
    // Opened without blocking, then checked: not a FIFO or a device, which would block the
    // read or never end.
    let file = crate::confined::open(confine, path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(std::io::Error::other(
            "not a regular file (a FIFO, a device or a directory); a revision's files must be plain files",
        ));
    }
    let too_big = || {
        std::io::Error::other(format!(
            "larger than the {} MiB wasmig reads of such a file",
            cap / (1024 * 1024)
        ))
    };
    if metadata.len() > cap {
        return Err(too_big());
    }
    // Sized as the file says (plus one byte, to see the end): two reads, not a growing buffer's
    // many.
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0) + 1);
    file.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(too_big());
    }
    Ok((bytes, metadata))
}

/// [`read_capped`] of a text file.
fn read_text_capped(confine: &Path, path: &Path, cap: u64) -> std::io::Result<String> {
    String::from_utf8(read_capped(confine, path, cap)?)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"))
}

/// Reads and validates one manifest.
///
/// # Errors
/// [`ConfigError`] naming the file.
pub fn read_manifest(path: &Path) -> Result<Manifest, ConfigError> {
    // Confined to the versions directory: `versions/<revision>/migration.toml`.
    let versions_dir = path.parent().and_then(Path::parent).unwrap_or(path);
    let text = read_text_capped(versions_dir, path, MAX_MANIFEST_FILE)
        .map_err(|e| ConfigError::new(format!("cannot read {}: {e}", path.display())))?;
    parse_manifest(&text, &path.display().to_string())
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

/// A project's revisions together with their graph: what the planner plans over.
#[derive(Debug, Clone)]
pub struct RevisionSet {
    revisions: Vec<Revision>,
    graph: Graph,
}

impl RevisionSet {
    /// The revisions of `project`, from its versions directory.
    ///
    /// # Errors
    /// As [`load_all`], and [`GraphError`] for an inconsistent graph.
    pub fn load(project: &Project) -> anyhow::Result<Self> {
        RevisionSet::new(load_all(&project.versions_dir())?)
    }

    /// A set of the given revisions.
    ///
    /// # Errors
    /// [`GraphError`] for an inconsistent graph.
    pub fn new(revisions: Vec<Revision>) -> anyhow::Result<Self> {
        let graph = Graph::new(&nodes(&revisions))?;
        Ok(RevisionSet { revisions, graph })
    }

    /// The revisions, in directory order.
    pub fn revisions(&self) -> &[Revision] {
        &self.revisions
    }

    /// Their graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The revision with this full id.
    pub fn find(&self, id: &str) -> Option<&Revision> {
        self.revisions.iter().find(|r| r.id() == id)
    }

    /// The steps from `heads` to `target`, upgrading or downgrading.
    ///
    /// # Errors
    /// [`GraphError`] for a target that cannot be reached that way.
    pub fn plan(
        &self,
        direction: Direction,
        heads: &[String],
        target: &str,
    ) -> Result<Vec<Step>, GraphError> {
        match direction {
            Direction::Upgrade => self.graph.plan_upgrade(heads, target),
            Direction::Downgrade => self.graph.plan_downgrade(heads, target),
        }
    }

    /// This set plus the applied revisions the project lacks, from the copies the database
    /// stored when it applied them (an older release was deployed over a newer database).
    /// Walks down from the stored heads the graph does not know, through the down
    /// revisions and dependencies of each stored revision.
    ///
    /// # Errors
    /// [`GraphError::NoStoredCopy`] for a missing revision without a stored copy,
    /// [`ConfigError`] for an invalid stored row, graph errors, database errors.
    pub async fn with_stored(
        self,
        project: &Project,
        db: &dyn Database,
        heads: &[String],
    ) -> anyhow::Result<Self> {
        let mut missing: Vec<String> = heads
            .iter()
            .filter(|h| self.graph.info(h).is_none())
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(self);
        }
        let RevisionSet {
            mut revisions,
            graph,
        } = self;
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
            // A dependency may be a branch label, which the graph resolves: look for a
            // stored revision of that name only if there is one.
            let depends_on = revision.manifest.depends_on.as_ref();
            for dep in depends_on.map(OneOrMany::to_vec).unwrap_or_default() {
                if !revisions.iter().any(|r| r.id() == dep)
                    && graph.dependency(&dep).is_err()
                    && db.stored_artifact(&dep).await?.is_some()
                {
                    missing.push(dep);
                }
            }
            revisions.push(revision);
        }
        RevisionSet::new(revisions)
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
        Kind::Wasm | Kind::Rust | Kind::Python | Kind::Js | Kind::C | Kind::Go => vec![
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
    read_artifact_seen(revision, build_dir, &mut Vec::new())
}

/// [`read_artifact`], appending to `seen` what the file system says of each file read, in
/// the order of the files a checksum covers (`up.sql`, `down.sql`; or the component), from
/// the descriptors read (the checksum memo's stamps, `crate::memo`). Nothing for a stored
/// revision.
///
/// # Errors
/// As [`read_artifact`].
pub fn read_artifact_seen(
    revision: &Revision,
    build_dir: &Path,
    seen: &mut Vec<std::fs::Metadata>,
) -> Result<Artifact, ConfigError> {
    if let Some(stored) = &revision.stored {
        return Ok(stored.clone());
    }
    let seen = std::cell::RefCell::new(seen);
    let read = |path: &Path, next: Option<wasmig_plan::NextStep>, cap: u64| {
        // A revision's files stay in the versions directory; a built component in the
        // build directory.
        let confine = if path.starts_with(build_dir) {
            build_dir
        } else {
            revision.dir.parent().unwrap_or(&revision.dir)
        };
        let (bytes, metadata) =
            read_capped_with_metadata(confine, path, cap).map_err(|e| ConfigError {
                message: format!(
                    "revision {}: cannot read {}: {e}",
                    revision.id(),
                    path.display(),
                ),
                next,
            })?;
        seen.borrow_mut().push(metadata);
        Ok(bytes)
    };
    match revision.manifest.kind {
        Kind::Sql => {
            let text = |name: &str| -> Result<String, ConfigError> {
                let path = revision.dir.join(name);
                String::from_utf8(read(&path, None, MAX_SQL_FILE)?).map_err(|_| {
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
        Kind::Wasm | Kind::Rust | Kind::Python | Kind::Js | Kind::C | Kind::Go => {
            let path = revision
                .component_path(build_dir)
                .expect("components have a path");
            let next = revision
                .manifest
                .kind
                .is_built()
                .then_some(wasmig_plan::NextStep::Build);
            Ok(Artifact::Component {
                bytes: read(&path, next, MAX_COMPONENT_FILE)?,
                path,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

//! `wasmig import --from FORMAT DIR`: another tool's migration directory as a linear chain of
//! SQL revisions in that tool's order, each keeping its version as its id, its name as its
//! message and where it came from (`imported_from`), its scripts byte for byte and its
//! transaction setting (a file's own `BEGIN` ... `COMMIT` cut out, said in `imported_from`).
//! Importing again is harmless: a revision already imported unchanged is kept, and only new
//! migrations are written, on top of it. Only the files the tool reads are read: the rest of
//! the directory (a dump, a FIFO, a link elsewhere) is not opened.
//!
//! Not here: the tools' rules (`wasmig_plan::import`, pure, given PostgreSQL's parser to
//! split statements), writing a revision's files (`scaffold`), adopting the old tool's
//! applied state (`migrator::adopt`).

use std::path::{Path, PathBuf};

use chrono::Utc;
pub use wasmig_plan::import::{
    AdoptRefused, Format, Reads, SourceFile, SourceMigration, ToolOptions,
};

use crate::config::Project;
use crate::error::ConfigError;
use crate::revision::{self, Artifact, Kind, Revision};

/// The most bytes read from one source file (a migration is text; this stops a stray
/// dump or binary from being read whole).
const MAX_FILE: u64 = 64 << 20;

/// One migration of the source, as the revision it becomes.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The revision id (the tool's version, `.` written `_`).
    pub id: String,
    /// The revision it follows (`None`: the first of a project that had none).
    pub parent: Option<String>,
    /// The migration as the tool runs it.
    pub migration: SourceMigration,
    /// Already in the project, imported unchanged before: not written again.
    pub exists: bool,
}

impl Imported {
    /// `down.sql`: the tool's down script, or a comment saying it had none.
    pub fn down(&self, format: Format) -> String {
        match &self.migration.down {
            Some(down) => down.clone(),
            None => format!(
                "-- {format} has no down migration for {}: reverting this revision runs nothing\n",
                self.migration.version
            ),
        }
    }

    /// `imported_from` in its manifest: the tool and the file, and whether the file's own
    /// `BEGIN` ... `COMMIT` was cut out.
    pub fn imported_from(&self, format: Format) -> String {
        let m = &self.migration;
        if m.transaction_cut {
            format!(
                "{format} {}; its own BEGIN and COMMIT cut out, wasmig runs it in one transaction",
                m.source
            )
        } else {
            format!("{format} {}", m.source)
        }
    }
}

/// What `wasmig import` will write.
#[derive(Debug, Clone)]
pub struct ImportPlan {
    /// The tool.
    pub format: Format,
    /// Every migration of the source, in the tool's order.
    pub revisions: Vec<Imported>,
}

/// The files of `dir` that `format`'s tool reads ([`Format::reads`], in the directories it
/// looks into), with paths relative to `dir`; the rest is not opened.
///
/// # Errors
/// [`ConfigError`] when `dir`, a directory the tool looks into, or a file it reads cannot be
/// read (a link out of `dir`, a FIFO, a file over 64 MiB).
pub fn read_dir(dir: &Path, format: Format) -> anyhow::Result<Vec<SourceFile>> {
    fn walk(
        root: &Path,
        dir: &Path,
        format: Format,
        out: &mut Vec<SourceFile>,
    ) -> Result<(), ConfigError> {
        let cannot = |path: &Path, e: std::io::Error| {
            ConfigError::new(format!("cannot read {}: {e}", path.display()))
        };
        for entry in std::fs::read_dir(dir).map_err(|e| cannot(dir, e))? {
            let entry = entry.map_err(|e| cannot(dir, e))?;
            let path = entry.path();
            let relative = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            // Not `is_dir()`: a link to a directory is not followed (it could loop).
            if entry.file_type().map_err(|e| cannot(&path, e))?.is_dir() {
                if format.descends(&relative) {
                    walk(root, &path, format, out)?;
                }
                continue;
            }
            let bytes = match format.reads(&relative) {
                Reads::Nothing => continue,
                Reads::Name => Vec::new(),
                Reads::ContentsIfFile if std::fs::metadata(&path).is_ok_and(|m| !m.is_file()) => {
                    continue;
                }
                Reads::Contents | Reads::ContentsIfFile => read_source(root, &path, format)?,
            };
            out.push(SourceFile {
                path: relative,
                bytes,
            });
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, dir, format, &mut files)?;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// One file of the source directory `root` that the tool reads, confined to `root`.
fn read_source(root: &Path, path: &Path, format: Format) -> Result<Vec<u8>, ConfigError> {
    revision::read_capped(root, path, MAX_FILE).map_err(|e| {
        if e.kind() == std::io::ErrorKind::PermissionDenied
            && crate::confined::resolve(root, path).is_err()
        {
            ConfigError::new(format!(
                "{} leads outside the source directory ({}) through a symbolic link, and {format} reads it as a migration; wasmig imports only files inside the directory: replace the link with the file itself, or import from the directory it leads to",
                path.display(),
                root.display()
            ))
        } else {
            ConfigError::new(format!("cannot read {}: {e}", path.display()))
        }
    })
}

/// A script's statements as PostgreSQL's parser splits them, for the tools' transaction
/// rules; `None` when it cannot read the script.
fn postgres_statements(script: &str) -> Option<Vec<&str>> {
    crate::db::split_statements(script, crate::bindings::Dialect::Postgres).ok()
}

/// Reads `dir` by `format`'s rules and places its migrations in the project: ids, parents,
/// and which are already there.
///
/// # Errors
/// [`ConfigError`] for a source the tool would refuse, a version that is no usable revision
/// id, or an id the project already uses for something else; graph errors when the project
/// has several heads to build on.
pub fn plan(
    project: &Project,
    format: Format,
    dir: &Path,
    options: ToolOptions,
) -> anyhow::Result<ImportPlan> {
    let files = read_dir(dir, format)?;
    let migrations = format.parse_with(&files, &postgres_statements, options)?;
    if migrations.is_empty() {
        return Err(ConfigError::new(format!(
            "{} holds no {format} migration; check the directory and --from",
            dir.display()
        ))
        .into());
    }
    let existing = revision::load_all(&project.versions_dir())?;
    let graph = crate::graph::Graph::new(&revision::nodes(&existing))?;
    let mut parent: Option<String> = None;
    let mut revisions = Vec::new();
    for (i, migration) in migrations.into_iter().enumerate() {
        let id = migration.version.replace('.', "_");
        if !revision::is_valid_id(&id) {
            return Err(ConfigError::new(format!(
                "{format} version {} ({}) cannot be a revision id (letters, digits, `_`, `-`, at most 64)",
                migration.version, migration.source
            ))
            .into());
        }
        let mut imported = Imported {
            id,
            parent: parent.clone(),
            migration,
            exists: false,
        };
        match existing.iter().find(|r| r.id() == imported.id) {
            Some(revision) => {
                same_import(project, revision, &imported, format)?;
                // Kept as it is, its transaction modes included: an import by an earlier
                // wasmig (or an edit) may have chosen others than this one would.
                let (up, down) = (
                    imported.migration.transaction(),
                    imported.migration.downgrade_transaction(),
                );
                let m = &revision.manifest;
                if (m.transaction, m.downgrade_transaction) != (up, down) {
                    tracing::warn!(
                        "revision {} (kept) has transaction = \"{}\"{}, where {format} runs {} as transaction = \"{}\"{}; edit {} if the tool's way is what you want",
                        imported.id,
                        m.transaction.as_str(),
                        m.downgrade_transaction
                            .map(|d| format!(", downgrade_transaction = \"{}\"", d.as_str()))
                            .unwrap_or_default(),
                        imported.migration.source,
                        up.as_str(),
                        down.map(|d| format!(", downgrade_transaction = \"{}\"", d.as_str()))
                            .unwrap_or_default(),
                        revision.dir.join(revision::MANIFEST).display()
                    );
                }
                imported.exists = true;
                imported.parent = revision.manifest.down_revisions().into_iter().next();
            }
            None if i == 0 => {
                // The first migration goes on the project's head, as `wasmig revision` would.
                imported.parent = graph
                    .parents_for_new(&["head".to_owned()], false)?
                    .into_iter()
                    .next();
            }
            None => {}
        }
        if !imported.exists {
            refuse_insertion(&imported, &graph, &existing, format)?;
        }
        parent = Some(imported.id.clone());
        revisions.push(imported);
    }
    // A new migration the tool sorts before one already imported would run out of the
    // tool's order: the chain only grows at its end.
    if let Some(new) = revisions.iter().position(|r| !r.exists)
        && let Some(old) = revisions[new..].iter().find(|r| r.exists)
    {
        return Err(ConfigError::new(format!(
            "{format} migration {} ({}) sorts before {}, which is imported already: wasmig imports a linear chain and does not insert into it; give the migration a version after the last one imported",
            revisions[new].migration.version, revisions[new].migration.source, old.id
        ))
        .into());
    }
    Ok(ImportPlan { format, revisions })
}

/// Refuses a new revision whose parent already has a child (revisions were added on top
/// of the imported chain since): it would start a branch.
fn refuse_insertion(
    imported: &Imported,
    graph: &crate::graph::Graph,
    existing: &[Revision],
    format: Format,
) -> Result<(), ConfigError> {
    let Some(after) = imported.parent.as_deref() else {
        return Ok(());
    };
    if existing.iter().any(|r| r.id() == after) && !graph.heads().contains(&after) {
        return Err(ConfigError::new(format!(
            "{format} migration {} ({}) would follow revision {after}, which other revisions already follow: wasmig imports a linear chain on the project's head; import into a project whose head is the last imported revision",
            imported.migration.version, imported.migration.source
        )));
    }
    Ok(())
}

/// Refuses an existing revision with an imported migration's id unless it is that migration,
/// imported unchanged.
fn same_import(
    project: &Project,
    revision: &Revision,
    imported: &Imported,
    format: Format,
) -> Result<(), ConfigError> {
    let from = imported.imported_from(format);
    let same_source = revision.manifest.imported_from.as_deref() == Some(from.as_str());
    let same_files = matches!(
        revision::read_artifact(revision, &crate::artifact::build_dir(project)),
        Ok(Artifact::Sql { up, down }) if up == imported.migration.up && down == imported.down(format)
    );
    if same_source && same_files {
        return Ok(());
    }
    Err(ConfigError::new(format!(
        "revision {} already exists ({}) and is not {from} as imported unchanged; move it aside, or import into another project",
        imported.id,
        revision.dir.display()
    )))
}

/// Writes the revisions of `plan` that are not in the project yet; returns their directories.
///
/// # Errors
/// I/O errors; [`ConfigError`] when a directory exists.
pub fn write(project: &Project, plan: &ImportPlan) -> anyhow::Result<Vec<PathBuf>> {
    let now = Utc::now();
    let mut written = Vec::new();
    for imported in plan.revisions.iter().filter(|r| !r.exists) {
        let m = &imported.migration;
        let message = if m.name.is_empty() {
            &m.version
        } else {
            &m.name
        };
        let mut manifest = crate::scaffold::manifest(
            &imported.id,
            imported.parent.clone().into_iter().collect(),
            message,
            Kind::Sql,
            now,
        );
        manifest.transaction = m.transaction();
        manifest.downgrade_transaction = m.downgrade_transaction();
        if m.transaction_cut {
            tracing::info!(
                "revision {}: {} wraps its statements in its own BEGIN ... COMMIT; cut out, wasmig runs the revision in one transaction of its own (transaction = \"per-migration\")",
                imported.id,
                m.source
            );
        }
        manifest.imported_from = Some(imported.imported_from(plan.format));
        written.push(crate::scaffold::write_sql_revision(
            project,
            &manifest,
            &m.up,
            &imported.down(plan.format),
            now,
        )?);
    }
    Ok(written)
}

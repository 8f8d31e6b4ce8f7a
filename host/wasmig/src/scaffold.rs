//! Creating things on disk: a new project (`wasmig init`) and a new revision
//! (`wasmig revision`), with their templates and post-write hooks.
//!
//! Not here: reading them back (`config`, `revision`), building (`artifact`).

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, Datelike, Timelike, Utc};

use crate::config::{CONFIG_FILE, Project};
use crate::error::{ConfigError, GraphError};
use crate::revision::{self, Kind, MANIFEST, Manifest, OneOrMany, TransactionMode};

const CONFIG_TEMPLATE: &str = r#"# wasmig project configuration. Every key is optional; the values shown are the defaults.

# Where revisions live.
versions_dir = "versions"

# The database. DATABASE_URL (environment or .env) and --database-url take precedence.
# Without any of them wasmig uses the SQLite file below, in this directory.
# database_url = "postgres://user@localhost/mydb"
default_sqlite_file = "wasmig.db"

# Directory name of new revisions: {year} {month} {day} {hour} {minute} {rev} {slug}.
file_template = "{year}_{month}_{day}_{hour}{minute}-{rev}_{slug}"

[sandbox]
# Linear-memory cap per migration, in MiB (a revision's manifest may override it).
memory_limit_mib = 512
# Wall-clock deadline per migration step, in seconds (a revision's manifest may override it).
timeout_secs = 600

[hooks]
# Run on every Rust file `wasmig revision` writes; {file} is its path.
rust = [["rustfmt", "--edition", "2024", "{file}"]]
"#;

/// Creates a project in `dir`: `wasmig.toml`, the versions directory with its Cargo
/// workspace for Rust migrations, and a `.gitignore`.
///
/// # Errors
/// [`ConfigError`] when `dir` already holds a project; I/O errors.
pub fn init(dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let config = dir.join(CONFIG_FILE);
    if config.exists() {
        return Err(ConfigError::new(format!(
            "{} already exists; this directory is already a wasmig project",
            config.display()
        ))
        .into());
    }
    std::fs::write(&config, CONFIG_TEMPLATE)?;
    let versions = dir.join("versions");
    std::fs::create_dir_all(&versions)?;
    std::fs::write(
        versions.join("Cargo.toml"),
        workspace_manifest(&sdk_dependency()),
    )?;
    // The SDK the workspace names, so that cargo (and an editor) finds it at once.
    crate::toolchain::embedded::write_rust_sdk(&versions)?;
    let gitignore = dir.join(".gitignore");
    if !gitignore.exists() {
        std::fs::write(
            &gitignore,
            ".wasmig/\ntarget/\nversions/target/\nversions/.wasmig-sdk/\nwasmig.db\nwasmig.db.wasmig-lock\n.env\n",
        )?;
    }
    Ok(config)
}

/// The Cargo workspace that holds Rust revisions; `wasmig build` maintains `members`.
pub fn workspace_manifest(sdk_dependency: &str) -> String {
    format!(
        r#"# The Cargo workspace of this project's Rust migrations.
# `wasmig build` keeps `members` in sync with the Rust revisions: do not edit it by hand.
[workspace]
resolver = "3"
members = []

[workspace.dependencies]
{sdk_dependency}

[profile.release]
opt-level = "s"
debug = false
panic = "abort"
"#
    )
}

/// How a new project depends on the guest SDK: on the copy wasmig materialises inside the
/// project's Cargo workspace (`versions/.wasmig-sdk/rust`, ignored by git), so the committed
/// files name nothing outside the project and a clone anywhere builds the same components.
fn sdk_dependency() -> String {
    format!(
        "wasmig-guest = {{ path = \"{}\" }}",
        crate::toolchain::embedded::RUST_SDK_DIR
    )
}

/// What `wasmig revision` was asked for.
#[derive(Debug)]
pub struct NewRevision<'a> {
    /// The message.
    pub message: &'a str,
    /// The kind.
    pub kind: Kind,
    /// An explicit id.
    pub rev_id: Option<&'a str>,
    /// For `--kind wasm`: a prebuilt component to copy in.
    pub component: Option<&'a Path>,
    /// What to build on: `head` (default), `base`, ids, `LABEL@head`; several for a merge.
    pub heads: &'a [String],
    /// Allow building on a revision that is not a head (starting a new branch).
    pub splice: bool,
    /// A merge: `heads` must name at least two revisions.
    pub merge: bool,
    /// Branch labels the new revision declares.
    pub branch_labels: &'a [String],
    /// Revisions or labels that must be applied before it.
    pub depends_on: &'a [String],
}

/// Creates a revision on top of the requested heads (Alembic's `revision` and `merge`).
///
/// # Errors
/// Graph errors (several heads, not a head without splice, unknown dependency, label
/// taken), an invalid or duplicate id, I/O errors.
pub fn new_revision(project: &Project, request: &NewRevision<'_>) -> anyhow::Result<PathBuf> {
    let versions = project.versions_dir();
    let revisions = revision::load_all(&versions)?;
    let graph = crate::graph::Graph::new(&revision::nodes(&revisions))?;
    let id = new_id(request.rev_id, &revisions)?;
    let (parents, depends_on) = placement(&graph, request)?;
    let now = Utc::now();
    let manifest = Manifest {
        branch_labels: OneOrMany::from_vec(request.branch_labels.to_vec()),
        depends_on: OneOrMany::from_vec(depends_on),
        ..manifest(&id, parents, request.message, request.kind, now)
    };
    let dir = create_dir(project, &manifest, now)?;
    let written = write_sources(project, &dir, &id, request)?;
    let hooks: &[Vec<String>] = match request.kind {
        Kind::Sql => &project.config.hooks.sql,
        Kind::Rust => &project.config.hooks.rust,
        Kind::Python => &project.config.hooks.python,
        Kind::Js => &project.config.hooks.js,
        Kind::C => &project.config.hooks.c,
        Kind::Go => &project.config.hooks.go,
        Kind::Wasm => &[],
    };
    for file in &written {
        run_hooks(hooks, file);
    }
    Ok(dir)
}

/// A new revision's manifest: `kind`, after `parents`, every optional setting unset.
pub fn manifest(
    id: &str,
    parents: Vec<String>,
    message: &str,
    kind: Kind,
    now: DateTime<Utc>,
) -> Manifest {
    Manifest {
        revision: id.to_owned(),
        down_revision: OneOrMany::from_vec(parents),
        branch_labels: None,
        depends_on: None,
        message: message.to_owned(),
        created: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        kind,
        transaction: TransactionMode::PerMigration,
        downgrade_transaction: None,
        component: None,
        timeout_secs: None,
        memory_limit_mib: None,
        max_batches: None,
        batched_timeout_secs: None,
        lock_timeout_secs: None,
        statement_timeout_secs: None,
        lock_timeout_retries: None,
        capabilities: None,
        imported_from: None,
        lint: Default::default(),
        partitions: None,
    }
}

/// Creates the directory of a new revision (named by the project's `file_template`) and
/// writes its manifest; returns the directory.
///
/// # Errors
/// [`ConfigError`] when the directory exists; I/O errors.
fn create_dir(
    project: &Project,
    manifest: &Manifest,
    now: DateTime<Utc>,
) -> anyhow::Result<PathBuf> {
    let dir = project.versions_dir().join(dir_name(
        &project.config.file_template,
        &manifest.revision,
        &manifest.message,
        now,
    ));
    if dir.exists() {
        return Err(ConfigError::new(format!("{} already exists", dir.display())).into());
    }
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(MANIFEST), toml::to_string(manifest)?)?;
    Ok(dir)
}

/// Writes a SQL revision whose scripts are given (`wasmig import`): byte for byte, so no
/// post-write hook runs on them. Returns its directory.
///
/// # Errors
/// [`ConfigError`] when the directory exists; I/O errors.
pub fn write_sql_revision(
    project: &Project,
    manifest: &Manifest,
    up: &str,
    down: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<PathBuf> {
    let dir = create_dir(project, manifest, now)?;
    std::fs::write(dir.join("up.sql"), up)?;
    std::fs::write(dir.join("down.sql"), down)?;
    Ok(dir)
}

/// The new revision's id: `--rev-id` if valid and free, else 12 random hex digits.
fn new_id(requested: Option<&str>, revisions: &[revision::Revision]) -> anyhow::Result<String> {
    let id = match requested {
        Some(id) if !revision::is_valid_id(id) => {
            return Err(ConfigError::new(format!(
                "invalid --rev-id `{id}`: use letters, digits, `_` and `-`"
            ))
            .into());
        }
        Some(id) => id.to_owned(),
        None => uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
    };
    if revisions.iter().any(|r| r.id() == id) {
        return Err(ConfigError::new(format!("revision `{id}` already exists")).into());
    }
    Ok(id)
}

/// Where the new revision goes in the graph: its down revisions and its dependencies, with
/// its branch labels checked.
fn placement(
    graph: &crate::graph::Graph,
    request: &NewRevision<'_>,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let default_head = ["head".to_owned()];
    let specs = if request.heads.is_empty() {
        &default_head[..]
    } else {
        request.heads
    };
    let parents = graph
        .parents_for_new(specs, request.splice)
        .map_err(|e| match e {
            GraphError::NotAHead(rev) if request.merge => GraphError::MergeNotAHead(rev),
            other => other,
        })?;
    if request.merge && parents.len() < 2 {
        return Err(GraphError::NothingToMerge(parents).into());
    }
    for label in request.branch_labels {
        crate::graph::check_label(label).map_err(|reason| {
            ConfigError::new(format!("invalid --branch-label `{label}`: {reason}"))
        })?;
        // A taken label is a graph error (exit 4), as when the graph is loaded.
        if let Some(owner) = graph.label_owner(label) {
            return Err(GraphError::LabelTaken {
                label: label.clone(),
                revision: owner.to_owned(),
            }
            .into());
        }
    }
    let depends_on = request
        .depends_on
        .iter()
        .map(|d| graph.dependency(d))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((parents, depends_on))
}

/// Writes the new revision's source from its kind's template; returns the files written
/// (for the hooks).
fn write_sources(
    project: &Project,
    dir: &Path,
    id: &str,
    request: &NewRevision<'_>,
) -> anyhow::Result<Vec<PathBuf>> {
    // Templates put the message in a comment: keep it on one line.
    let message = request.message.replace(['\n', '\r'], " ");
    Ok(match request.kind {
        Kind::Sql => {
            let up = dir.join("up.sql");
            let down = dir.join("down.sql");
            std::fs::write(&up, format!("-- {message}: upgrade\n"))?;
            std::fs::write(
                &down,
                format!("-- {message}: downgrade (undo everything up.sql does)\n"),
            )?;
            vec![up, down]
        }
        Kind::Rust => {
            std::fs::create_dir_all(dir.join("src"))?;
            std::fs::write(dir.join("Cargo.toml"), crate_manifest(id))?;
            let lib = dir.join("src/lib.rs");
            std::fs::write(&lib, rust_template(&message))?;
            let versions = project.versions_dir();
            let all = revision::load_all(&versions)?;
            crate::artifact::sync_workspace(&versions, &all)?;
            vec![lib]
        }
        Kind::Python | Kind::Js | Kind::C => {
            let name = crate::toolchain::source_file(request.kind).expect("a language kind");
            let file = dir.join(name);
            let text = match request.kind {
                Kind::Python => python_template(&message),
                Kind::Js => js_template(&message),
                _ => c_template(&message),
            };
            std::fs::write(&file, text)?;
            vec![file]
        }
        Kind::Go => {
            let source = dir.join(crate::toolchain::go::SOURCE_FILE);
            let go_mod = dir.join("go.mod");
            std::fs::write(&source, go_template(&message))?;
            std::fs::write(&go_mod, crate::toolchain::go::go_mod_template(id))?;
            // The SDK the `replace` names, so that `go vet` and an editor find it at once.
            crate::toolchain::go::write_sdk(&project.versions_dir())?;
            vec![source, go_mod]
        }
        Kind::Wasm => {
            if let Some(component) = request.component {
                std::fs::copy(component, dir.join("migration.wasm")).map_err(|e| {
                    ConfigError::new(format!("cannot copy {}: {e}", component.display()))
                })?;
            } else {
                tracing::info!(
                    "put the component at {}",
                    dir.join("migration.wasm").display()
                );
            }
            Vec::new()
        }
    })
}

/// The directory name from the template.
pub fn dir_name(template: &str, rev: &str, message: &str, now: DateTime<Utc>) -> String {
    template
        .replace("{year}", &format!("{:04}", now.year()))
        .replace("{month}", &format!("{:02}", now.month()))
        .replace("{day}", &format!("{:02}", now.day()))
        .replace("{hour}", &format!("{:02}", now.hour()))
        .replace("{minute}", &format!("{:02}", now.minute()))
        .replace("{rev}", rev)
        .replace("{slug}", &slug(message))
}

/// `Add users table!` → `add_users_table`, at most 40 characters.
pub fn slug(message: &str) -> String {
    let mut out = String::new();
    for c in message.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    let trimmed: String = out.trim_end_matches('_').chars().take(40).collect();
    trimmed.trim_end_matches('_').to_owned()
}

fn crate_manifest(id: &str) -> String {
    format!(
        r#"[package]
name = "m_{}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
wasmig-guest.workspace = true
"#,
        id.replace('-', "_").to_ascii_lowercase()
    )
}

fn rust_template(message: &str) -> String {
    format!(
        r#"//! {message}

use wasmig_guest::{{Migration, Result, db, info}};

struct Revision;

impl Migration for Revision {{
    fn upgrade() -> Result<()> {{
        info!("upgrading");
        db::batch("-- your SQL here")?;
        Ok(())
    }}

    fn downgrade() -> Result<()> {{
        info!("downgrading");
        db::batch("-- undo what upgrade did")?;
        Ok(())
    }}
}}

wasmig_guest::migration!(Revision);
"#
    )
}

fn python_template(message: &str) -> String {
    // A docstring: keep the message from ending it early.
    let message = message.replace("\"\"\"", "'''");
    format!(
        r#""""{message}"""

import wasmig


def upgrade():
    wasmig.info("upgrading")
    wasmig.batch("-- your SQL here")


def downgrade():
    wasmig.info("downgrading")
    wasmig.batch("-- undo what upgrade did")
"#
    )
}

fn js_template(message: &str) -> String {
    format!(
        r#"// {message}

import * as db from "wasmig";

export function upgrade() {{
  db.info("upgrading");
  db.batch("-- your SQL here");
}}

export function downgrade() {{
  db.info("downgrading");
  db.batch("-- undo what upgrade did");
}}
"#
    )
}

fn c_template(message: &str) -> String {
    // `*/` in the message would end the comment early.
    let message = message.replace("*/", "* /");
    format!(
        r#"/* {message} */

#include "wasmig.h"

static bool upgrade(void) {{
    wasmig_info("upgrading");
    return wasmig_batch("-- your SQL here");
}}

static bool downgrade(void) {{
    wasmig_info("downgrading");
    return wasmig_batch("-- undo what upgrade did");
}}

WASMIG_MIGRATION(upgrade, downgrade)
"#
    )
}

fn go_template(message: &str) -> String {
    format!(
        r#"// Package migration: {message}
package migration

import "wasmig"

func init() {{
	wasmig.Register(upgrade, downgrade)
}}

func upgrade() error {{
	wasmig.Infof("upgrading")
	return wasmig.Batch("-- your SQL here")
}}

func downgrade() error {{
	wasmig.Infof("downgrading")
	return wasmig.Batch("-- undo what upgrade did")
}}
"#
    )
}

/// Runs each hook on `file`; a failing or missing program is a warning.
fn run_hooks(hooks: &[Vec<String>], file: &Path) {
    for hook in hooks {
        let Some((program, args)) = hook.split_first() else {
            continue;
        };
        let args: Vec<String> = args
            .iter()
            .map(|a| a.replace("{file}", &file.to_string_lossy()))
            .collect();
        match Command::new(program).args(&args).status() {
            Ok(s) if s.success() => {}
            Ok(s) => tracing::warn!(
                "post-write hook `{}` failed on {} ({s})",
                hook.join(" "),
                file.display()
            ),
            Err(e) => tracing::warn!("post-write hook `{program}` could not run: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_short_and_safe() {
        assert_eq!(slug("Add users table!"), "add_users_table");
        assert_eq!(slug("  --x--  "), "x");
        assert!(slug(&"word ".repeat(30)).len() <= 40);
    }

    #[test]
    fn dir_names_follow_the_template() {
        let t = DateTime::parse_from_rfc3339("2026-11-25T03:04:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            dir_name(
                crate::config::DEFAULT_FILE_TEMPLATE,
                "abc123",
                "Create users",
                t
            ),
            "2026_11_25_0304-abc123_create_users"
        );
    }
}

//! `wasmig revision` and `wasmig merge`: create a revision (or a merge revision) on disk.

use serde_json::json;
use wasmig::Migrator;
use wasmig::revision::Kind;
use wasmig::scaffold::{self, NewRevision};

use crate::args::{Command, Global};
use crate::output::out;

/// Creates the revision `command` describes (`Revision` or `Merge`).
pub(super) fn run(migrator: &Migrator, g: &Global, command: &Command) -> anyhow::Result<()> {
    let new = match command {
        Command::Revision {
            message,
            kind,
            rev_id,
            component,
            head,
            splice,
            branch_label,
            depends_on,
        } => NewRevision {
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
        Command::Merge {
            revisions,
            message,
            rev_id,
            branch_label,
            splice,
        } => NewRevision {
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
        _ => unreachable!("dispatched on revision and merge only"),
    };
    let dir = scaffold::new_revision(migrator.project(), &new)?;
    tracing::info!("created {}", dir.display());
    if g.json {
        out!("{}", json!({ "directory": dir }));
    }
    Ok(())
}

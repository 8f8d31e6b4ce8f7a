//! How revisions are listed: the lines of `history`, `heads`, `branches` and `show`, in
//! text (Alembic's layout) and JSON.
//!
//! Pure formatting over a [`Graph`] and the loaded [`Revision`]s; choosing which revisions
//! to list is the planner's job (`graph`). What a revision's files say (its message, labels,
//! creation time, directory name) is text wasmig did not write: in the text layouts each
//! piece is shown as one line with control characters escaped (`text::shown`), so a
//! revision cannot move the cursor, recolour the terminal or print lines of its own.

use serde_json::{Value, json};
use wasmig_contract::text::shown;

use crate::graph::{Graph, RevisionInfo};
use crate::revision::{Revision, kind_name};

/// Looks a revision up by its full id.
pub fn find<'a>(revisions: &'a [Revision], id: &str) -> &'a Revision {
    revisions
        .iter()
        .find(|r| r.id() == id)
        .expect("graph ids are revisions")
}

fn info(graph: &Graph, id: &str) -> RevisionInfo {
    graph.info(id).expect("graph ids have info")
}

/// The markers after an id: labels, `(head)`, `(branchpoint)`, `(mergepoint)`,
/// `(current)`.
fn markers(i: &RevisionInfo, current: &[String]) -> String {
    let mut out = String::new();
    if !i.branch_labels.is_empty() {
        out.push_str(&format!(" ({})", shown(&i.branch_labels.join(", "))));
    }
    if current.contains(&i.revision) {
        out.push_str(" (current)");
    }
    if i.is_head {
        out.push_str(" (head)");
    }
    if i.is_branch_point {
        out.push_str(" (branchpoint)");
    }
    if i.is_merge_point {
        out.push_str(" (mergepoint)");
    }
    out
}

/// One `history` line: `DOWN -> REV (markers), message [kind]`.
pub fn line(graph: &Graph, revisions: &[Revision], id: &str, current: &[String]) -> String {
    let i = info(graph, id);
    let r = find(revisions, id);
    let down = if i.down_revisions.is_empty() {
        "<base>".to_owned()
    } else {
        i.down_revisions.join(", ")
    };
    format!(
        "{down} -> {id}{}, {} [{}]",
        markers(&i, current),
        shown(&r.manifest.message),
        kind_name(r.manifest.kind)
    )
}

/// A short description: `REV (markers), message`.
pub fn short(graph: &Graph, revisions: &[Revision], id: &str, current: &[String]) -> String {
    let i = info(graph, id);
    format!(
        "{id}{}, {}",
        markers(&i, current),
        shown(&find(revisions, id).manifest.message)
    )
}

/// Every field of a revision, as `history --verbose` and `show` print it.
pub fn verbose(graph: &Graph, revisions: &[Revision], id: &str, current: &[String]) -> String {
    let i = info(graph, id);
    let r = find(revisions, id);
    let mut out = format!("Rev: {id}{}\n", markers(&i, current));
    if i.is_merge_point {
        out.push_str(&format!("Merges: {}\n", i.down_revisions.join(", ")));
    } else {
        let parent = i.down_revisions.first().map_or("<base>", String::as_str);
        out.push_str(&format!("Parent: {parent}\n"));
    }
    if i.is_branch_point {
        out.push_str(&format!("Branches into: {}\n", i.next_revisions.join(", ")));
    }
    if !i.branch_labels.is_empty() {
        out.push_str(&format!(
            "Branch names: {}\n",
            shown(&i.branch_labels.join(", "))
        ));
    }
    if !i.depends_on.is_empty() {
        out.push_str(&format!("Also depends on: {}\n", i.depends_on.join(", ")));
    }
    // A message of several lines keeps them, each shown on its own.
    let message = r
        .manifest
        .message
        .lines()
        .map(shown)
        .collect::<Vec<_>>()
        .join("\n    ");
    out.push_str(&format!(
        "Kind: {}\nCreated: {}\nPath: {}\n\n    {message}\n",
        kind_name(r.manifest.kind),
        shown(&r.manifest.created),
        shown(&r.dir.display().to_string()),
    ));
    out
}

/// A revision as JSON: `revision`, `down_revisions`, `branch_labels`, `depends_on` and more.
pub fn json(graph: &Graph, revisions: &[Revision], id: &str) -> Value {
    let i = info(graph, id);
    let r = find(revisions, id);
    json!({
        "revision": i.revision,
        "down_revisions": i.down_revisions,
        "branch_labels": i.branch_labels,
        "depends_on": i.depends_on,
        "next_revisions": i.next_revisions,
        "is_head": i.is_head,
        "is_branch_point": i.is_branch_point,
        "is_merge_point": i.is_merge_point,
        "message": r.manifest.message,
        "created": r.manifest.created,
        "kind": kind_name(r.manifest.kind),
        "directory": r.dir,
    })
}

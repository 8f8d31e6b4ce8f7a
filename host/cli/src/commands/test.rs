//! `wasmig test`: the stairway on a scratch database (`wasmig::Migrator::test`), one line
//! per revision, or one JSON document; a failed revision is exit 14.

use serde_json::json;
use wasmig::error::StairwayFailed;
use wasmig::migrator::{StairwayOptions, StairwayReport};
use wasmig::{Migrator, Options};

use crate::args::Global;
use crate::output::out;
use crate::terminal::visible;

/// Runs the stairway, prints each revision's outcome, and fails when one revision did.
pub(super) async fn run(
    migrator: Migrator,
    g: &Global,
    options: &StairwayOptions,
    build: bool,
    use_cache: bool,
) -> anyhow::Result<()> {
    let options_in_force = Options {
        build,
        use_cache,
        ..migrator.options().clone()
    };
    let migrator = migrator.with_options(options_in_force);
    // Ctrl-C or SIGTERM ends the walk, and the scratch database is still dropped (a
    // SIGKILL leaves it: `wasmig_test_*` databases on the server are safe to drop).
    let mut signals = super::signals();
    let interrupted = async move {
        signals.recv().await;
    };
    let report = migrator.test(options, interrupted).await?;
    if g.json {
        out!(
            "{}",
            json!({
                "ok": report.failed().is_none(),
                "scratch": report.scratch,
                "kept": report.kept,
                "revisions": report.revisions,
                "not_run": report.not_run,
            })
        );
    } else {
        print_text(&report);
    }
    match report.failed() {
        Some(r) => Err(StairwayFailed {
            revision: r.revision.clone(),
            reason: r.failure.as_ref().map(|f| f.summary()).unwrap_or_default(),
        }
        .into()),
        None => Ok(()),
    }
}

/// A line per revision (`ok` or `FAILED`, the id, the message), the failure's details
/// indented under it, then what was not run or a summary.
fn print_text(report: &StairwayReport) {
    for r in &report.revisions {
        let message = visible(&wasmig::bindings::text::shown(&r.message));
        let extras = match (r.fixture, r.checks) {
            (false, 0) => String::new(),
            (true, 0) => ", fixture".to_owned(),
            (fixture, n) => format!("{}, {n} check(s)", if fixture { ", fixture" } else { "" }),
        };
        match &r.failure {
            None => out!(
                "ok      {} {message} ({} ms{extras})",
                r.revision,
                r.duration_ms
            ),
            Some(f) => {
                out!("FAILED  {} {message}: {}", r.revision, f.summary());
                for line in f.details() {
                    out!("        {}", visible(&line));
                }
            }
        }
    }
    if !report.not_run.is_empty() {
        out!("not run: {}", report.not_run.join(", "));
    }
    if report.failed().is_none() {
        out!(
            "ok: {} revision(s): each one's down undoes its up, and its up runs again after it",
            report.revisions.len()
        );
    }
    if report.kept {
        out!("kept the scratch database: {}", report.scratch);
    }
}

//! `wasmig up` and `wasmig down` (and their `--plan`): run or print the plan to a target.

use serde_json::json;
use wasmig::graph::Direction;
use wasmig::migrator::{Plan, RunReport};
use wasmig::{Migrator, Options};

use crate::args::{Global, RunArgs};
use crate::output::{self, out};

/// Runs (or with `--plan`, prints) the plan `direction` to the target.
pub(super) async fn run(
    migrator: Migrator,
    g: &Global,
    args: &RunArgs,
    direction: Direction,
) -> anyhow::Result<()> {
    let options = Options {
        build: !args.no_build,
        use_cache: !args.no_cache,
        atomic: args.atomic,
        allow_modified: args.allow_modified,
        dry_run: args.dry_run,
        journal: args.journal.clone(),
        dry_run_batches: args.batches.unwrap_or(1),
        workers: args.workers,
        ..migrator.options().clone()
    };
    let migrator = migrator.with_options(options);
    let target = args.target.as_deref();
    if let Some(targets) = super::fleet::targets(&migrator, &args.fleet.source).await? {
        return super::fleet::run(&migrator, g, &args.fleet, &targets, direction, target).await;
    }
    if args.sql {
        let range = target.unwrap_or(match direction {
            Direction::Upgrade => "heads",
            Direction::Downgrade => "",
        });
        let script = migrator.sql_script(direction, range).await?;
        out!("{}", script.trim_end());
        return Ok(());
    }
    if args.plan {
        // `--plan` writes nothing, so it does not wait for a run in progress.
        let plan = migrator.plan(direction, target).await?;
        print_plan(g, &plan);
        return Ok(());
    }
    let report = migrator.run(direction, target).await?;
    if report.dry_run {
        print_dry_run(g, &report);
        return Ok(());
    }
    if report.steps.is_empty() {
        tracing::info!(
            "nothing to do: the database is at {}",
            output::heads(&report.heads_before)
        );
    } else {
        let ms: u64 = report.steps.iter().map(|r| r.duration_ms).sum();
        tracing::info!(
            "{} {} revision(s) in {ms} ms",
            match direction {
                Direction::Upgrade => "applied",
                Direction::Downgrade => "reverted",
            },
            report.steps.len()
        );
    }
    if g.json {
        out!("{}", json!({ "steps": report.steps }));
    }
    Ok(())
}

/// Prints what a dry run's steps did: `{"dry_run": true, "steps": [...], "not_run": [...]}`
/// with `--json`, else a paragraph per step.
fn print_dry_run(g: &Global, report: &RunReport) {
    if g.json {
        out!(
            "{}",
            json!({ "dry_run": true, "steps": report.steps, "not_run": report.not_run })
        );
        return;
    }
    let verb = match report.direction {
        Direction::Upgrade => "would apply",
        Direction::Downgrade => "would revert",
    };
    if report.steps.is_empty() && report.not_run.is_empty() {
        out!(
            "nothing to do: the database is at {}",
            output::heads(&report.heads_before)
        );
    }
    for step in &report.steps {
        out!(
            "{verb} {} ({}, {} ms)",
            step.revision,
            step.kind,
            step.duration_ms
        );
        let Some(observed) = &step.observed else {
            continue;
        };
        if let Some(n) = observed.rows_changed {
            out!("  rows changed: {n}");
        }
        for t in &observed.tables {
            let mut parts = Vec::new();
            for (n, what) in [
                (t.inserted, "inserted"),
                (t.updated, "updated"),
                (t.deleted, "deleted"),
            ] {
                if n > 0 {
                    parts.push(format!("{n} {what}"));
                }
            }
            out!("  rows: {}: {}", t.table, parts.join(", "));
        }
        for l in &observed.locks {
            out!("  lock: {} on {}", l.mode, l.relation);
        }
        if observed.rows_changed.is_none()
            && observed.tables.is_empty()
            && observed.locks.is_empty()
        {
            out!("  no rows written, no table locked");
        }
    }
    for n in &report.not_run {
        out!("not run: {} ({})", n.revision, n.reason);
    }
    if !report.steps.is_empty() {
        out!("dry run: rolled back; the database and its version table are unchanged");
    }
}

/// Prints a plan: `{"steps": [...]}` with `--json`, else a line per step (saying which
/// resume from a checkpoint).
fn print_plan(g: &Global, plan: &Plan) {
    if g.json {
        out!("{}", json!({ "steps": plan.steps }));
        return;
    }
    for s in &plan.steps {
        match plan
            .resuming
            .iter()
            .find(|c| c.revision == s.revision && c.direction == s.action)
        {
            Some(c) => out!(
                "{} {} (resuming after batch {})",
                s.action.as_str(),
                s.revision,
                c.batches
            ),
            None => out!("{} {}", s.action.as_str(), s.revision),
        }
    }
}

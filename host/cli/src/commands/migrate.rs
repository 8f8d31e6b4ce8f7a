//! `wasmig up` and `wasmig down` (and their `--plan`): run or print the plan to a target.

use serde_json::json;
use wasmig::graph::Direction;
use wasmig::migrator::Plan;
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
        ..migrator.options().clone()
    };
    let migrator = migrator.with_options(options);
    let target = args.target.as_deref();
    if args.plan {
        // `--plan` writes nothing, so it does not wait for a run in progress.
        let plan = migrator.plan(direction, target).await?;
        print_plan(g, &plan);
        return Ok(());
    }
    let report = migrator.run(direction, target).await?;
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

//! Fleet mode's commands: `wasmig up`/`down --targets FILE` (or `--fleet`) and `wasmig
//! current --targets FILE`: the list, the run, and the final table or JSON document.

use serde_json::json;
use wasmig::Migrator;
use wasmig::fleet::{self, FleetFailed, FleetOptions, FleetReport, Source, State, Target};
use wasmig::graph::Direction;

use crate::args::{CurrentArgs, FleetArgs, FleetSource, Global};
use crate::exit;
use crate::output::out;

/// The fleet's targets, when the command line asks for a fleet (`None`: one database).
pub(super) async fn targets(
    migrator: &Migrator,
    source: &FleetSource,
) -> anyhow::Result<Option<Vec<Target>>> {
    if source.targets.is_none() && !source.fleet {
        return Ok(None);
    }
    // Before the list is read: in untrusted mode its command or query is the change's.
    fleet::refuse_untrusted(migrator)?;
    let project = migrator.project();
    let source = match (&source.targets, source.fleet) {
        (Some(file), _) => Source::File(file.clone()),
        (None, true) => Source::configured(project)?,
        (None, false) => return Ok(None),
    };
    let targets = source.load(project).await?;
    tracing::info!("fleet: {} target(s)", targets.len());
    Ok(Some(targets))
}

/// Runs `direction` to `target` on every target, then prints the table (or, with `--json`,
/// the report).
///
/// # Errors
/// [`FleetFailed`] (exit 16, or 17 when no target succeeded) after printing, when a target
/// failed or did not run; errors before any target ran.
pub(super) async fn run(
    migrator: &Migrator,
    g: &Global,
    args: &FleetArgs,
    targets: &[Target],
    direction: Direction,
    target: Option<&str>,
) -> anyhow::Result<()> {
    let options = FleetOptions::new(
        migrator.project(),
        args.jobs.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        args.on_error.map(Into::into),
        args.ledger.clone(),
        args.fresh,
    )?;
    // Ctrl-C or SIGTERM: no other target starts, those under way finish (again: they are
    // abandoned), and the table is printed.
    let mut interrupts = super::signals();
    let report = fleet::run(
        migrator,
        direction,
        target,
        targets,
        &options,
        &mut interrupts,
    )
    .await?;
    if g.json {
        out!("{}", report_json(&report));
    } else {
        print_table(&report);
    }
    let verb = match direction {
        Direction::Upgrade => "migrated",
        Direction::Downgrade => "reverted",
    };
    tracing::info!(
        "fleet: {} {verb}, {} skipped (done earlier, by the ledger), {} failed, {} not run, of {} target(s) in {:.1} s",
        report.count(State::Done),
        report.count(State::Skipped),
        report.count(State::Failed),
        report.count(State::NotRun),
        report.targets.len(),
        report.duration_ms as f64 / 1000.0
    );
    if let Some(name) = &report.stopped_by {
        tracing::warn!(
            "fleet: stopped after {name} failed (on_error = stop); fix it, then run the same command again: the ledger skips the targets done"
        );
    }
    if let Some(ledger) = &report.ledger {
        tracing::info!(
            "fleet: the ledger {} remembers the targets done; --fresh visits them all again",
            ledger.display()
        );
    }
    if report.interrupted {
        return Err(fleet::FleetInterrupted {
            not_run: report.count(State::NotRun),
            abandoned: report.abandoned,
        }
        .into());
    }
    match report.failure() {
        Some(failed) => Err(failed.into()),
        None => Ok(()),
    }
}

/// `{"targets": [...], "stopped_by", "ledger", "duration_ms", "counts"}`, each failed
/// target with the exit code `wasmig up` would have given it alone.
fn report_json(report: &FleetReport) -> serde_json::Value {
    let mut value = serde_json::to_value(report).unwrap_or_default();
    if let Some(list) = value.get_mut("targets").and_then(|t| t.as_array_mut()) {
        for (entry, outcome) in list.iter_mut().zip(&report.targets) {
            if let (Some(cause), Some(map)) = (&outcome.cause, entry.as_object_mut()) {
                map.insert("exit_code".into(), json!(exit::code_for(cause)));
            }
        }
    }
    value["counts"] = json!({
        "done": report.count(State::Done),
        "skipped": report.count(State::Skipped),
        "failed": report.count(State::Failed),
        "not_run": report.count(State::NotRun),
        "total": report.targets.len(),
    });
    value
}

/// The final table: a line per target, in list order.
fn print_table(report: &FleetReport) {
    let rows: Vec<[String; 5]> = report
        .targets
        .iter()
        .map(|t| {
            let state = match t.state {
                State::Done => "done",
                State::Skipped => "skipped",
                State::Failed => "FAILED",
                State::NotRun => "not run",
            };
            let detail = match (&t.error, &t.cause) {
                (Some(e), Some(cause)) => format!("exit {}: {e}", exit::code_for(cause)),
                _ if t.steps.is_empty() => String::new(),
                _ => t.steps.join(" "),
            };
            [
                t.target.clone(),
                t.group.clone(),
                state.to_owned(),
                t.duration_ms.to_string(),
                detail,
            ]
        })
        .collect();
    table(
        &["TARGET", "GROUP", "STATE", "MS", "REVISIONS / ERROR"],
        &rows,
    );
}

/// Prints `rows` under `header`, each column as wide as its widest cell (the last as is).
fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == N {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        text.trim_end().to_owned()
    };
    out!("{}", line(header.to_vec()));
    for row in rows {
        out!("{}", line(row.iter().map(String::as_str).collect()));
    }
}

/// `wasmig current --targets`: a line per target (its heads, what is pending, failed or
/// part-way), or with `--json` `{"targets": [...]}`.
///
/// # Errors
/// [`FleetFailed`] (exit 16, or 17) when a target could not be read.
pub(super) async fn current(
    migrator: &Migrator,
    g: &Global,
    args: &CurrentArgs,
    targets: &[Target],
) -> anyhow::Result<()> {
    let jobs = FleetOptions::new(
        migrator.project(),
        args.jobs.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        None,
        None,
        false,
    )?
    .jobs;
    let found = fleet::status(migrator, targets, jobs).await?;
    if g.json {
        let mut value = json!({ "targets": found });
        if let Some(list) = value.get_mut("targets").and_then(|t| t.as_array_mut()) {
            for (entry, status) in list.iter_mut().zip(&found) {
                if let (Some(cause), Some(map)) = (&status.cause, entry.as_object_mut()) {
                    map.insert("exit_code".into(), json!(exit::code_for(cause)));
                }
            }
        }
        out!("{value}");
    } else {
        let rows: Vec<[String; 5]> = found
            .iter()
            .map(|s| {
                let state = if s.cause.is_some() {
                    "UNREADABLE".to_owned()
                } else if !s.failed.is_empty() {
                    format!("FAILED ({})", s.failed.join(" "))
                } else if !s.in_progress.is_empty() {
                    format!("in progress ({})", s.in_progress.join(" "))
                } else if s.pending == 0 {
                    "up to date".to_owned()
                } else {
                    format!("{} pending", s.pending)
                };
                [
                    s.target.clone(),
                    s.group.clone(),
                    crate::output::heads(&s.current),
                    state,
                    s.error.clone().unwrap_or_default(),
                ]
            })
            .collect();
        table(&["TARGET", "GROUP", "CURRENT", "STATE", "ERROR"], &rows);
    }
    let unreadable = found.iter().filter(|s| s.cause.is_some()).count();
    let up_to_date = found
        .iter()
        .filter(|s| s.cause.is_none() && s.pending == 0 && s.failed.is_empty())
        .count();
    tracing::info!(
        "fleet: {up_to_date} of {} target(s) up to date, {unreadable} unreadable",
        found.len()
    );
    if unreadable > 0 {
        return Err(FleetFailed {
            failed: unreadable,
            not_run: 0,
            succeeded: found.len() - unreadable,
            total: found.len(),
        }
        .into());
    }
    Ok(())
}

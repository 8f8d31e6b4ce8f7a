//! `wasmig lint [REV...] [--down] [--dialect D] [--format human|json|github]`: the SQL
//! revisions' dangerous operations (`wasmig::lint`), for people, for scripts, or as GitHub
//! annotations; findings are exit 15.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::json;
use wasmig::bindings::Dialect;
use wasmig::graph::Direction;
use wasmig::lint::{self, Finding, Report, Scripts};
use wasmig::{Migrator, Options};

use crate::args::{Global, LintDialect, LintFormat};
use crate::output::out;

/// What `wasmig lint` was asked.
pub(super) struct LintArgs<'a> {
    pub(super) selected: &'a [String],
    pub(super) down: bool,
    pub(super) dialect: Option<LintDialect>,
    pub(super) format: Option<LintFormat>,
    /// `--dry-run`: run the pending revisions in a dry run first (with `--batches`).
    pub(super) dry_run: Option<u64>,
}

/// Lints, prints the report, and fails when there are findings.
pub(super) async fn run(migrator: Migrator, g: &Global, args: LintArgs<'_>) -> anyhow::Result<()> {
    let LintArgs {
        selected,
        down,
        dialect,
        format,
        dry_run,
    } = args;
    let (migrator, ran) = match dry_run {
        Some(batches) => {
            let (migrator, ran) = dry_run_journal(migrator, batches).await?;
            (migrator, Some(ran))
        }
        None => (migrator, None),
    };
    let migrator = &migrator;
    let set = migrator.revisions()?;
    let dialect = match dialect {
        Some(LintDialect::Postgres) => Dialect::Postgres,
        Some(LintDialect::Sqlite) => Dialect::Sqlite,
        None => migrator.database_url()?.0.dialect(),
    };
    // Every revision in the order `up` applies them, or the ones named, in that order.
    let order = set.plan(wasmig::graph::Direction::Upgrade, &[], "heads")?;
    let mut wanted: Vec<&str> = Vec::new();
    for name in selected {
        wanted.extend(set.graph().resolve_all(name)?);
    }
    let revisions: Vec<_> = order
        .iter()
        .filter(|step| wanted.is_empty() || wanted.contains(&step.revision.as_str()))
        .filter_map(|step| set.find(&step.revision))
        .collect();
    let scripts = if down {
        Scripts::UpAndDown
    } else {
        Scripts::Up
    };
    let report = lint::lint(
        migrator.project(),
        &revisions,
        dialect,
        scripts,
        ran.as_ref(),
    )?;
    let format = match format {
        Some(f) => f,
        None if g.json => LintFormat::Json,
        None => LintFormat::Human,
    };
    match format {
        LintFormat::Json => print_json(&report),
        LintFormat::Github => print_github(&report),
        LintFormat::Human => print_human(&report),
    }
    lint::verdict(&report)?;
    Ok(())
}

/// Runs `up --dry-run` with a journal in a private temporary file, and reads from it what
/// each revision did; the step durations from the run's report.
async fn dry_run_journal(
    migrator: Migrator,
    batches: u64,
) -> anyhow::Result<(Migrator, BTreeMap<String, lint::Ran>)> {
    use std::os::unix::fs::DirBuilderExt as _;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!("wasmig-lint-{}-{nanos}", std::process::id()));
    // Private: the journal holds the migration's statements and parameters.
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    let path = dir.join("journal.jsonl");
    let options = migrator.options().clone();
    let dry = migrator.with_options(Options {
        dry_run: true,
        dry_run_batches: batches,
        journal: Some(path.clone()),
        ..options.clone()
    });
    let report = dry.run(Direction::Upgrade, None).await;
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    let report = report?;
    let mut ran = lint::ran_from_journal(&text);
    for step in &report.steps {
        ran.entry(step.revision.clone()).or_default().duration_ms = step.duration_ms;
    }
    Ok((dry.with_options(options), ran))
}

/// `path` relative to the working directory when it is below it (as editors and GitHub
/// want it), else as it is.
fn shown(path: &Path) -> PathBuf {
    let cwd = std::env::current_dir().ok();
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    cwd.and_then(|cwd| absolute.strip_prefix(&cwd).ok().map(Path::to_owned))
        .unwrap_or(absolute)
}

fn print_json(report: &Report) {
    let findings: Vec<_> = report
        .findings
        .iter()
        .map(|f| {
            let mut value = serde_json::to_value(f).expect("a finding serialises");
            value["file"] = json!(shown(&f.file));
            value
        })
        .collect();
    out!(
        "{}",
        json!({
            "ok": report.findings.is_empty(),
            "dialect": report.dialect,
            "linted": report.linted,
            "findings": findings,
            "ignored": report.ignored,
            "not_linted": report.not_linted,
            "unparsed": report.unparsed,
        })
    );
}

/// GitHub's workflow commands: `::error file=F,line=L,...,title=T::MESSAGE`.
fn print_github(report: &Report) {
    for f in &report.findings {
        let mut message = f.message.clone();
        if let Some(help) = &f.help {
            message.push_str("\nhelp: ");
            message.push_str(help);
        }
        out!(
            "::error file={},line={},col={},endLine={},endColumn={},title={}::{}",
            property(&shown(&f.file).display().to_string()),
            f.line,
            f.column,
            f.end_line,
            f.end_column,
            property(&format!("wasmig lint: {} ({})", f.rule, f.revision)),
            data(&message)
        );
    }
    for u in &report.unparsed {
        out!(
            "::warning file={},line={},title={}::{}",
            property(&shown(&u.file).display().to_string()),
            u.line,
            property("wasmig lint: not linted"),
            data(&format!(
                "squawk's parser could not read this script, so it was not linted: {}",
                u.message
            ))
        );
    }
}

/// A workflow command's message, escaped as GitHub's toolkit does.
fn data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A workflow command's property value, escaped as GitHub's toolkit does.
fn property(text: &str) -> String {
    data(text).replace(':', "%3A").replace(',', "%2C")
}

fn print_human(report: &Report) {
    for Finding {
        revision,
        file,
        line,
        column,
        rule,
        by,
        message,
        help,
        ..
    } in &report.findings
    {
        out!(
            "{}:{line}:{column}: {rule} ({by}, revision {revision}): {message}",
            shown(file).display()
        );
        if let Some(help) = help {
            out!("  help: {help}");
        }
    }
    for i in &report.ignored {
        out!(
            "ignored: {} {} ({} finding(s)): {}",
            i.revision,
            i.rule,
            i.count,
            i.reason
        );
    }
    for u in &report.unparsed {
        out!(
            "not linted: {}:{}: squawk's parser could not read this script: {}",
            shown(&u.file).display(),
            u.line,
            u.message
        );
    }
    for n in &report.not_linted {
        out!("not linted: {} ({})", n.revision, n.reason);
    }
    if report.dialect == Dialect::Sqlite.name() {
        out!("SQLite: only wasmig's rules apply (squawk's are PostgreSQL's; --dialect postgres)");
    }
    if report.findings.is_empty() {
        out!("ok: {} revision(s) linted, no findings", report.linted);
    }
}

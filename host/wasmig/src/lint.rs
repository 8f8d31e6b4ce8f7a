//! `wasmig lint`: dangerous operations in SQL revisions, found without a database.
//!
//! PostgreSQL's rules are squawk's (the `squawk-linter` crate, used as a library: rewriting
//! `ALTER`s, `CREATE INDEX` without `CONCURRENTLY`, a `NOT NULL` column without a default,
//! `ADD CONSTRAINT` without `NOT VALID`, renames and drops the running application still
//! uses, a missing `lock_timeout`...). wasmig adds what only it knows, from the revision's
//! manifest and the project's configuration:
//!
//! - whether the script runs inside wasmig's transaction (`transaction = "per-migration"`,
//!   squawk's `assume_in_transaction`) or statement by statement (`"none"`);
//! - the `lock_timeout` and `statement_timeout` wasmig sets for the step (`[timeouts]`,
//!   the manifest's), which answer squawk's `require-lock-timeout` and
//!   `require-statement-timeout` without a `SET` in the script;
//! - `no-transaction-required`: a statement PostgreSQL refuses inside a transaction block
//!   (`CREATE INDEX CONCURRENTLY`, `VACUUM`...) in a revision wasmig runs in one;
//! - `non-atomic-revision`: a `transaction = "none"` script of several statements, which a
//!   failure part-way leaves half-applied and marked failed;
//! - `unused-lint-ignore`: an ignore in a manifest that matched nothing, so stale ignores
//!   cannot hide the next finding.
//!
//! Findings are ignored per revision in its manifest, each with a reason
//! (`[[lint.ignore]]`, see [`LintIgnore`]), or per statement with squawk's own
//! `-- squawk-ignore RULE` comment. Component revisions are not linted here: their
//! statements exist only when they run. On SQLite only wasmig's rules apply.

use std::path::PathBuf;

use serde::Serialize;
use squawk_linter::{Linter, Rule};
use squawk_syntax::SourceFile;
use wasmig_plan::manifest::{Kind, LintIgnore, TransactionMode};

use crate::bindings::Dialect;
use crate::config::{LintSettings, Project};
use crate::error::ConfigError;
use crate::revision::{self, Revision};

/// wasmig's rule: a `transaction = "none"` script of more than one statement.
pub const NON_ATOMIC: &str = "non-atomic-revision";
/// wasmig's rule: a statement PostgreSQL refuses inside a transaction block, in a revision
/// wasmig runs in one (it supersedes squawk's
/// `ban-concurrent-index-creation-in-transaction`, which passes a script of one statement).
pub const TRANSACTION_BLOCK: &str = "no-transaction-required";
/// wasmig's rule: a manifest's ignore that matched no finding.
pub const UNUSED_IGNORE: &str = "unused-lint-ignore";

/// Which of a revision's scripts to lint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scripts {
    /// `up.sql` only: what a deploy runs.
    Up,
    /// `up.sql` and `down.sql`.
    UpAndDown,
}

/// One dangerous operation, where it is and what to do about it.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The revision id.
    pub revision: String,
    /// The script (or the manifest, for `unused-lint-ignore`).
    pub file: PathBuf,
    /// 1-based line and column (in characters) of the start, and of the end.
    pub line: usize,
    /// See `line`.
    pub column: usize,
    /// See `line`.
    pub end_line: usize,
    /// See `line`.
    pub end_column: usize,
    /// The rule's name (squawk's, or wasmig's own).
    pub rule: String,
    /// Who checks it: `squawk` or `wasmig`.
    pub by: &'static str,
    /// What is dangerous.
    pub message: String,
    /// What to do instead.
    pub help: Option<String>,
}

/// Findings a manifest ignored, with the manifest's reason.
#[derive(Debug, Clone, Serialize)]
pub struct Ignored {
    /// The revision id.
    pub revision: String,
    /// The rule.
    pub rule: String,
    /// The reason the manifest gives.
    pub reason: String,
    /// How many findings it ignored.
    pub count: usize,
}

/// A revision `wasmig lint` did not look into, and why.
#[derive(Debug, Clone, Serialize)]
pub struct NotLinted {
    /// The revision id.
    pub revision: String,
    /// Why.
    pub reason: String,
}

/// Statements squawk's parser could not read: not linted (the server's parser decides
/// whether they run; this is squawk's limit, not a finding).
#[derive(Debug, Clone, Serialize)]
pub struct Unparsed {
    /// The revision id.
    pub revision: String,
    /// The script.
    pub file: PathBuf,
    /// 1-based line of the first error.
    pub line: usize,
    /// squawk's message.
    pub message: String,
}

/// What `wasmig lint` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The dialect the rules were chosen for.
    pub dialect: String,
    /// How many revisions' scripts were linted.
    pub linted: usize,
    /// Findings not ignored, in revision order.
    pub findings: Vec<Finding>,
    /// Findings the manifests ignored.
    pub ignored: Vec<Ignored>,
    /// Revisions not linted (components).
    pub not_linted: Vec<NotLinted>,
    /// Scripts squawk could not parse entirely.
    pub unparsed: Vec<Unparsed>,
}

/// `wasmig lint` found dangerous operations (exit 15).
#[derive(Debug, thiserror::Error)]
#[error(
    "lint: {count} finding(s) in {revisions} revision(s); fix them, or ignore a rule in the revision's migration.toml with a reason ([[lint.ignore]])"
)]
pub struct LintFindings {
    /// Findings.
    pub count: usize,
    /// Revisions with findings.
    pub revisions: usize,
}

/// Lints `revisions` (in the order given) for `dialect`.
///
/// # Errors
/// [`ConfigError`] for an unreadable script, an ignore naming an unknown rule or without a
/// reason, or an invalid `[lint]` section or manifest timeout.
pub fn lint(
    project: &Project,
    revisions: &[&Revision],
    dialect: Dialect,
    scripts: Scripts,
) -> anyhow::Result<Report> {
    let settings = &project.config.lint;
    let rules = squawk_rules(settings)?;
    let pg_version = match &settings.pg_version {
        Some(v) => Some(v.parse::<squawk_linter::Version>().map_err(|e| {
            ConfigError::new(format!(
                "invalid wasmig.toml: [lint] pg_version = {v:?}: {e:?}; write the server's version, such as \"15\" or \"16.4\""
            ))
        })?),
        None => None,
    };
    let mut report = Report {
        dialect: dialect.name().to_owned(),
        ..Report::default()
    };
    let build_dir = crate::artifact::build_dir(project);
    for revision in revisions {
        let manifest = &revision.manifest;
        let manifest_path = revision.dir.join(revision::MANIFEST);
        check_ignores(revision, &manifest_path)?;
        if manifest.kind != Kind::Sql {
            report.not_linted.push(NotLinted {
                revision: revision.id().to_owned(),
                reason: format!(
                    "a {} component: its statements exist only when it runs",
                    kind_name(manifest.kind)
                ),
            });
            continue;
        }
        let (up, down) = match revision::read_artifact(revision, &build_dir)? {
            wasmig_plan::manifest::Artifact::Sql { up, down } => (up, down),
            wasmig_plan::manifest::Artifact::Component { .. } => continue,
        };
        let timeouts = crate::runner::timeouts(project, revision)?;
        let mut found = Vec::new();
        let mut texts = vec![("up.sql", up)];
        if scripts == Scripts::UpAndDown {
            texts.push(("down.sql", down));
        }
        for (name, text) in &texts {
            let file = revision.dir.join(name);
            if dialect == Dialect::Postgres {
                let in_transaction = manifest.transaction != TransactionMode::None;
                let mut linter = Linter::from(rules.iter().copied());
                linter.settings.assume_in_transaction = in_transaction;
                if let Some(v) = pg_version {
                    linter.settings.pg_version = v;
                }
                let parse = SourceFile::parse(text);
                if let Some(error) = parse.errors().first() {
                    report.unparsed.push(Unparsed {
                        revision: revision.id().to_owned(),
                        file: file.clone(),
                        line: position(text, error.range().start().into()).0,
                        message: error.message().to_owned(),
                    });
                }
                if in_transaction {
                    for (range, what) in needs_no_transaction(&parse) {
                        found.push(finding(
                            revision,
                            &file,
                            text,
                            range,
                            TRANSACTION_BLOCK.to_owned(),
                            "wasmig",
                            format!(
                                "{what} cannot run inside a transaction block, and this revision runs in one (transaction = \"per-migration\"): the step will fail"
                            ),
                            Some(
                                "move the statement to a revision of its own with transaction = \"none\" in its migration.toml".to_owned(),
                            ),
                        ));
                    }
                }
                for v in linter.lint(&parse, text) {
                    let rule = v.code;
                    // wasmig sets these for the step when the project or manifest says so.
                    if (rule == Rule::RequireLockTimeout && timeouts.lock_timeout_secs.is_some())
                        || (rule == Rule::RequireStatementTimeout
                            && timeouts.statement_timeout_secs.is_some())
                    {
                        continue;
                    }
                    let help = match rule {
                        Rule::RequireLockTimeout | Rule::RequireStatementTimeout => Some(format!(
                            "{} Or let wasmig set it for the step: [timeouts] lock_timeout_secs and statement_timeout_secs in wasmig.toml, or in the revision's migration.toml.",
                            v.help.as_deref().unwrap_or_default()
                        )),
                        _ => v.help,
                    };
                    found.push(finding(
                        revision,
                        &file,
                        text,
                        (v.text_range.start().into(), v.text_range.end().into()),
                        rule.to_string(),
                        "squawk",
                        v.message,
                        help,
                    ));
                }
            }
            if manifest.transaction == TransactionMode::None {
                let statements = crate::db::split_statements(text, dialect).map_err(|e| {
                    ConfigError::new(format!(
                        "revision {}: cannot split {}: {}",
                        revision.id(),
                        file.display(),
                        e.describe()
                    ))
                })?;
                if statements.len() > 1 {
                    let second = statements[1].trim_start();
                    let start = second.as_ptr() as usize - text.as_ptr() as usize;
                    found.push(finding(
                        revision,
                        &file,
                        text,
                        (start, start + second.trim_end().len()),
                        NON_ATOMIC.to_owned(),
                        "wasmig",
                        format!(
                            "{} runs {} statements outside a transaction: if statement {} or a later one fails, the ones before it stay applied and the revision is marked failed until `wasmig resolve`",
                            name,
                            statements.len(),
                            2
                        ),
                        Some(
                            "put each statement that needs to run outside a transaction (CREATE INDEX CONCURRENTLY...) in a revision of its own, and the rest in a transactional one".to_owned(),
                        ),
                    ));
                }
            }
        }
        report.linted += 1;
        apply_ignores(revision, &manifest_path, found, &mut report);
    }
    Ok(report)
}

/// Fails with [`LintFindings`] when the report has findings.
///
/// # Errors
/// [`LintFindings`].
pub fn verdict(report: &Report) -> Result<(), LintFindings> {
    if report.findings.is_empty() {
        return Ok(());
    }
    let mut revisions: Vec<&str> = report
        .findings
        .iter()
        .map(|f| f.revision.as_str())
        .collect();
    revisions.dedup();
    Err(LintFindings {
        count: report.findings.len(),
        revisions: revisions.len(),
    })
}

/// squawk's default rules, with `[lint] include` and `exclude` applied.
fn squawk_rules(settings: &LintSettings) -> Result<Vec<Rule>, ConfigError> {
    let parse = |names: &[String], key: &str| -> Result<Vec<Rule>, ConfigError> {
        names
            .iter()
            .map(|name| {
                Rule::try_from(name.as_str()).map_err(|_| {
                    ConfigError::new(format!(
                        "invalid wasmig.toml: [lint] {key} names {name:?}, which is not one of squawk's rules (https://squawkhq.com/docs/rules)"
                    ))
                })
            })
            .collect()
    };
    let include = parse(&settings.include, "include")?;
    let exclude = parse(&settings.exclude, "exclude")?;
    // wasmig's no-transaction-required knows whether the script runs in a transaction.
    let mut exclude = exclude;
    exclude.push(Rule::BanConcurrentIndexCreationInTransaction);
    Ok(Linter::with_rules(&include, &exclude)
        .rules
        .into_iter()
        .collect())
}

/// The statements of `parse` PostgreSQL refuses inside a transaction block: their byte
/// ranges and what they are.
fn needs_no_transaction(
    parse: &squawk_syntax::Parse<SourceFile>,
) -> Vec<((usize, usize), &'static str)> {
    use squawk_syntax::SyntaxKind;
    use squawk_syntax::ast::{AstNode as _, Stmt};
    let mut found = Vec::new();
    for stmt in parse.tree().stmts() {
        let concurrently = || {
            stmt.syntax()
                .descendants_with_tokens()
                .any(|e| e.kind() == SyntaxKind::CONCURRENTLY_KW)
        };
        let what = match &stmt {
            Stmt::Vacuum(_) => "VACUUM",
            Stmt::CreateDatabase(_) => "CREATE DATABASE",
            Stmt::DropDatabase(_) => "DROP DATABASE",
            Stmt::AlterSystem(_) => "ALTER SYSTEM",
            Stmt::CreateTablespace(_) => "CREATE TABLESPACE",
            Stmt::DropTablespace(_) => "DROP TABLESPACE",
            Stmt::CreateSubscription(_) => "CREATE SUBSCRIPTION",
            Stmt::CreateIndex(_) if concurrently() => "CREATE INDEX CONCURRENTLY",
            Stmt::DropIndex(_) if concurrently() => "DROP INDEX CONCURRENTLY",
            Stmt::Reindex(_) if concurrently() => "REINDEX CONCURRENTLY",
            Stmt::AlterTable(_) if concurrently() => "DETACH PARTITION CONCURRENTLY",
            _ => continue,
        };
        let range = stmt.syntax().text_range();
        found.push(((range.start().into(), range.end().into()), what));
    }
    found
}

/// Whether `rule` names a rule `wasmig lint` can report.
fn known_rule(rule: &str) -> bool {
    [NON_ATOMIC, TRANSACTION_BLOCK].contains(&rule) || Rule::try_from(rule).is_ok()
}

/// Refuses an ignore naming an unknown rule or without a reason.
fn check_ignores(revision: &Revision, manifest_path: &std::path::Path) -> Result<(), ConfigError> {
    for LintIgnore { rule, reason } in &revision.manifest.lint.ignore {
        if !known_rule(rule) {
            return Err(ConfigError::new(format!(
                "invalid manifest {}: [[lint.ignore]] rule = {rule:?} is not a rule wasmig lint reports (squawk's, {NON_ATOMIC} or {TRANSACTION_BLOCK})",
                manifest_path.display()
            )));
        }
        if reason.trim().is_empty() {
            return Err(ConfigError::new(format!(
                "invalid manifest {}: [[lint.ignore]] rule = {rule:?} has no reason; say why the operation is safe here (reason = \"...\")",
                manifest_path.display()
            )));
        }
    }
    Ok(())
}

/// Moves the findings the manifest ignores into `report.ignored`, the rest into
/// `report.findings`, and reports each ignore that matched nothing.
fn apply_ignores(
    revision: &Revision,
    manifest_path: &std::path::Path,
    found: Vec<Finding>,
    report: &mut Report,
) {
    let ignores = &revision.manifest.lint.ignore;
    let mut counts = vec![0usize; ignores.len()];
    for f in found {
        match ignores.iter().position(|i| i.rule == f.rule) {
            Some(k) => counts[k] += 1,
            None => report.findings.push(f),
        }
    }
    for (ignore, count) in ignores.iter().zip(counts) {
        if count == 0 {
            report.findings.push(Finding {
                revision: revision.id().to_owned(),
                file: manifest_path.to_owned(),
                line: 1,
                column: 1,
                end_line: 1,
                end_column: 1,
                rule: UNUSED_IGNORE.to_owned(),
                by: "wasmig",
                message: format!(
                    "the manifest ignores {} but the revision has no such finding",
                    ignore.rule
                ),
                help: Some("remove the ignore, so it cannot hide a later finding".to_owned()),
            });
        } else {
            report.ignored.push(Ignored {
                revision: revision.id().to_owned(),
                rule: ignore.rule.clone(),
                reason: ignore.reason.clone(),
                count,
            });
        }
    }
}

/// A finding at byte range `range` of `text`.
#[allow(clippy::too_many_arguments)]
fn finding(
    revision: &Revision,
    file: &std::path::Path,
    text: &str,
    range: (usize, usize),
    rule: String,
    by: &'static str,
    message: String,
    help: Option<String>,
) -> Finding {
    let (line, column) = position(text, range.0);
    let (end_line, end_column) = position(text, range.1);
    Finding {
        revision: revision.id().to_owned(),
        file: file.to_owned(),
        line,
        column,
        end_line,
        end_column,
        rule,
        by,
        message,
        help,
    }
}

/// The 1-based line and column (in characters) of byte `offset` in `text`.
pub fn position(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// A kind's name as `--kind` spells it.
fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Sql => "sql",
        Kind::Rust => "Rust",
        Kind::Python => "Python",
        Kind::Js => "JavaScript",
        Kind::C => "C",
        Kind::Go => "Go",
        Kind::Wasm => "prebuilt",
    }
}

#[cfg(test)]
mod tests {
    use super::position;

    #[test]
    fn positions_count_lines_and_characters_from_one() {
        let text = "SELECT 1;\nSELECT 'é', 2;";
        assert_eq!(position(text, 0), (1, 1));
        assert_eq!(position(text, 10), (2, 1));
        // 'é' is two bytes, one character.
        let after = text.find(", 2").unwrap();
        assert_eq!(position(text, after), (2, 11));
        assert_eq!(position(text, 1000), (2, 15));
    }
}

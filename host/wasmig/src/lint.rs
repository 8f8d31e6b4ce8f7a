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
//! - `non-atomic-revision`: a script of several statements that runs statement by statement
//!   (`transaction = "none"`, or on MySQL any script holding DDL, which MySQL commits
//!   implicitly), so a failure part-way leaves it half-applied and marked failed;
//! - `unused-lint-ignore`: an ignore in a manifest that matched nothing, so stale ignores
//!   cannot hide the next finding;
//! - `blocking-rewrite`: a statement that blocks a table's readers and writers while it
//!   rewrites it, which squawk reports only for PostgreSQL 19 (`VACUUM FULL`, `CLUSTER`,
//!   `SET TABLESPACE`, `SET LOGGED/UNLOGGED`, `SET ACCESS METHOD`, `REFRESH MATERIALIZED
//!   VIEW` without `CONCURRENTLY`).
//!
//! squawk's `constraint-missing-not-valid` is dropped for `UNIQUE`, `PRIMARY KEY` and
//! `EXCLUDE` constraints, which PostgreSQL cannot add `NOT VALID` (the advice would fail).
//!
//! With a dry run's journal ([`Ran`], `wasmig lint --dry-run`), also what components did:
//! squawk's rules on the statements they sent, `ddl-in-batched-revision`,
//! `no-progress-report`, and `slow-dry-run-step` (`[lint] max_step_secs`).
//!
//! Findings are ignored per revision in its manifest, each with a reason
//! (`[[lint.ignore]]`, see [`LintIgnore`]), or per statement with squawk's own
//! `-- squawk-ignore RULE` comment. Without a dry run, component revisions are not linted:
//! their statements exist only when they run. On SQLite and MySQL only wasmig's rules apply.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;
use squawk_linter::{Linter, Rule};
use squawk_syntax::SourceFile;
use wasmig_plan::graph::Direction;
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
/// wasmig's rule (dry run): DDL in a `transaction = "batched"` revision, which runs it in a
/// batch's transaction (taking its locks there) rather than in a revision of its own.
pub const DDL_IN_BATCHED: &str = "ddl-in-batched-revision";
/// wasmig's rule (dry run): a component that wrote rows without reporting progress.
pub const NO_PROGRESS: &str = "no-progress-report";
/// wasmig's rule (dry run): a step that took longer than `[lint] max_step_secs`.
pub const SLOW_STEP: &str = "slow-dry-run-step";
/// wasmig's rule: a manifest's ignore that matched no finding.
pub const UNUSED_IGNORE: &str = "unused-lint-ignore";
/// wasmig's rule: a statement that blocks reads and writes of a table (or materialized
/// view) while it rewrites or recomputes it, which no squawk rule reports before
/// PostgreSQL 19: `VACUUM FULL`, `CLUSTER`, `SET TABLESPACE`, `SET LOGGED/UNLOGGED`,
/// `SET ACCESS METHOD`, `REFRESH MATERIALIZED VIEW` without `CONCURRENTLY`.
pub const BLOCKING_REWRITE: &str = "blocking-rewrite";

/// What a dry run showed of one revision (`wasmig lint --dry-run`), read from its journal.
#[derive(Debug, Clone, Default)]
pub struct Ran {
    /// The statements a component's calls sent, in order.
    pub statements: Vec<String>,
    /// Whether the component reported progress.
    pub progress: bool,
    /// Whether the server counted rows written by the step.
    pub wrote_rows: bool,
    /// How long the step took, in milliseconds.
    pub duration_ms: u64,
}

/// The revisions of a dry run's journal (JSON lines, see `wasmig_sandbox::journal`).
pub fn ran_from_journal(text: &str) -> BTreeMap<String, Ran> {
    let mut ran: BTreeMap<String, Ran> = BTreeMap::new();
    for line in text.lines() {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let Some(revision) = entry["revision"].as_str() else {
            continue;
        };
        let r = ran.entry(revision.to_owned()).or_default();
        let call = entry["call"].as_str().unwrap_or_default();
        if call == "progress" {
            r.progress = true;
        }
        let observed = &entry["observed"];
        let wrote = observed["rows_changed"].as_i64().unwrap_or(0) > 0
            || observed["tables"].as_array().is_some_and(|t| {
                t.iter().any(|t| {
                    ["inserted", "updated", "deleted"]
                        .iter()
                        .any(|k| t[k].as_i64().unwrap_or(0) > 0)
                })
            });
        r.wrote_rows |= wrote;
        if call != "script"
            && let Some(sql) = entry["sql"].as_str()
            && !sql.trim().is_empty()
        {
            r.statements.push(sql.to_owned());
        }
    }
    ran
}

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
    ran: Option<&BTreeMap<String, Ran>>,
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
        let this_ran = ran.and_then(|r| r.get(revision.id()));
        let mut found = Vec::new();
        if let Some(r) = this_ran {
            found.extend(dry_run_findings(
                project, revision, r, dialect, &rules, pg_version,
            ));
        }
        if manifest.kind != Kind::Sql {
            match this_ran {
                Some(_) => report.linted += 1,
                None => report.not_linted.push(NotLinted {
                    revision: revision.id().to_owned(),
                    reason: format!(
                        "a {} component: its statements exist only when it runs ({})",
                        kind_name(manifest.kind),
                        if ran.is_some() {
                            "the dry run did not run it: applied already, or after a transaction = \"none\" step"
                        } else {
                            "`wasmig lint --dry-run` runs it to lint them"
                        }
                    ),
                }),
            }
            let ran_here = Judged {
                dialect,
                rules: &rules,
                dry_run: this_ran.is_some(),
                max_step_secs: settings.max_step_secs.is_some(),
                one_by_one: false,
            };
            apply_ignores(revision, &manifest_path, found, &ran_here, &mut report);
            continue;
        }
        let (up, down) = match revision::read_artifact(revision, &build_dir)? {
            wasmig_plan::manifest::Artifact::Sql { up, down } => (up, down),
            wasmig_plan::manifest::Artifact::Component { .. } => continue,
        };
        let timeouts = crate::runner::timeouts(project, revision)?;
        let mut texts = vec![("up.sql", up, Direction::Upgrade)];
        if scripts == Scripts::UpAndDown {
            texts.push(("down.sql", down, Direction::Downgrade));
        }
        let mut one_by_one = false;
        for (name, text, direction) in &texts {
            let file = revision.dir.join(name);
            let mode = manifest.transaction_for(*direction);
            if dialect == Dialect::Postgres {
                let in_transaction = mode != TransactionMode::None;
                let parse = SourceFile::parse(text);
                if let Some(error) = parse.errors().first() {
                    report.unparsed.push(Unparsed {
                        revision: revision.id().to_owned(),
                        file: file.clone(),
                        line: position(text, error.range().start().into()).0,
                        message: error.message().to_owned(),
                    });
                }
                for (range, what) in blocking_rewrites(&parse) {
                    found.push(finding(
                        revision,
                        &file,
                        text,
                        range,
                        BLOCKING_REWRITE.to_owned(),
                        "wasmig",
                        what.to_owned(),
                        Some(BLOCKING_REWRITE_HELP.to_owned()),
                    ));
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
                                "{what} cannot run inside a transaction block, and this revision runs in one ({} = \"per-migration\"): the step will fail",
                                manifest.transaction_key(*direction)
                            ),
                            Some(match direction {
                                Direction::Upgrade => "move the statement to a revision of its own with transaction = \"none\" in its migration.toml".to_owned(),
                                Direction::Downgrade => "set downgrade_transaction = \"none\" in its migration.toml (its down.sql then runs statement by statement), or move the statement to a revision of its own".to_owned(),
                            }),
                        ));
                    }
                }
                let squawk = Squawk {
                    rules: &rules,
                    pg_version,
                    timeouts: &timeouts,
                };
                for v in squawk.lint(&parse, text, in_transaction) {
                    let rule = v.code;
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
            // MySQL commits DDL implicitly, so wasmig runs a script holding any statement
            // but data statements one by one there, as `transaction = "none"` runs it.
            let mysql_ddl = dialect == Dialect::Mysql && !crate::db::only_data(text, dialect);
            if mode == TransactionMode::None || mysql_ddl {
                one_by_one = true;
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
                            "{} runs {} statements outside a transaction{}: if statement {} or a later one fails, the ones before it stay applied and the revision is marked failed until `wasmig resolve`",
                            name,
                            statements.len(),
                            if mysql_ddl && mode != TransactionMode::None {
                                " (it holds DDL, which MySQL and MariaDB commit implicitly, so wasmig runs it statement by statement)"
                            } else {
                                ""
                            },
                            2
                        ),
                        Some(if mysql_ddl {
                            "on MySQL, give each DDL statement a revision of its own, and put data statements in a revision of their own (wasmig runs those in one transaction)".to_owned()
                        } else {
                            "put each statement that needs to run outside a transaction (CREATE INDEX CONCURRENTLY...) in a revision of its own, and the rest in a transactional one".to_owned()
                        }),
                    ));
                }
            }
        }
        report.linted += 1;
        let ran_here = Judged {
            dialect,
            rules: &rules,
            dry_run: this_ran.is_some(),
            max_step_secs: settings.max_step_secs.is_some(),
            one_by_one,
        };
        apply_ignores(revision, &manifest_path, found, &ran_here, &mut report);
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

/// The findings of a revision's dry run: squawk's rules and `no-transaction-required` on a
/// component's statements (PostgreSQL), DDL in a batched revision, rows written without a
/// progress report, a step slower than `[lint] max_step_secs`. A component's finding is
/// placed at its revision's directory, line = the statement's number in the dry run.
fn dry_run_findings(
    project: &Project,
    revision: &Revision,
    r: &Ran,
    dialect: Dialect,
    rules: &[Rule],
    pg_version: Option<squawk_linter::Version>,
) -> Vec<Finding> {
    let mut found = Vec::new();
    let dir = revision.dir.clone();
    let at = |k: usize, rule: &str, message: String, help: Option<String>| Finding {
        revision: revision.id().to_owned(),
        file: dir.clone(),
        line: k,
        column: 1,
        end_line: k,
        end_column: 1,
        rule: rule.to_owned(),
        by: if Rule::try_from(rule).is_ok() {
            "squawk"
        } else {
            "wasmig"
        },
        message,
        help,
    };
    let shown = |sql: &str| {
        let one_line = sql.split_whitespace().collect::<Vec<_>>().join(" ");
        match one_line.char_indices().nth(80) {
            Some((cut, _)) => format!("{}...", &one_line[..cut]),
            None => one_line,
        }
    };
    let component = revision.manifest.kind != Kind::Sql;
    if component && dialect == Dialect::Postgres {
        let timeouts = crate::runner::timeouts(project, revision).unwrap_or_default();
        let squawk = Squawk {
            rules,
            pg_version,
            timeouts: &timeouts,
        };
        for (k, sql) in r.statements.iter().enumerate() {
            let parse = SourceFile::parse(sql);
            // A component's calls always run in a transaction.
            for v in squawk.lint(&parse, sql, true) {
                found.push(at(
                    k + 1,
                    &v.code.to_string(),
                    format!(
                        "dry-run statement {} `{}`: {}",
                        k + 1,
                        shown(sql),
                        v.message
                    ),
                    v.help,
                ));
            }
            for (_, what) in blocking_rewrites(&parse) {
                found.push(at(
                    k + 1,
                    BLOCKING_REWRITE,
                    format!("dry-run statement {} `{}`: {what}", k + 1, shown(sql)),
                    Some(BLOCKING_REWRITE_HELP.to_owned()),
                ));
            }
            for (_, what) in needs_no_transaction(&parse) {
                found.push(at(
                    k + 1,
                    TRANSACTION_BLOCK,
                    format!(
                        "dry-run statement {} `{}`: {what} cannot run inside a transaction block, and a component's calls always run in one",
                        k + 1,
                        shown(sql)
                    ),
                    Some("run it from an SQL revision with transaction = \"none\"".to_owned()),
                ));
            }
        }
    }
    if revision.manifest.transaction == TransactionMode::Batched {
        for (k, sql) in r.statements.iter().enumerate() {
            if is_ddl(sql) {
                found.push(at(
                    k + 1,
                    DDL_IN_BATCHED,
                    format!(
                        "dry-run statement {} `{}` changes the schema inside a batched revision: it runs in a batch's transaction, holding its locks there, and only the batch that runs it undoes it",
                        k + 1,
                        shown(sql)
                    ),
                    Some("put the schema change in an SQL revision before this one, and keep the batches to data".to_owned()),
                ));
            }
        }
    }
    if component && r.wrote_rows && !r.progress {
        found.push(at(
            1,
            NO_PROGRESS,
            "the component wrote rows in the dry run without reporting progress: a long run of it shows nothing until it ends".to_owned(),
            Some("call the SDK's progress (Rust `wasmig_guest::progress`, Python `wasmig.progress`...) as batches complete".to_owned()),
        ));
    }
    if let Some(max) = project.config.lint.max_step_secs
        && r.duration_ms as f64 > max * 1000.0
    {
        found.push(at(
            1,
            SLOW_STEP,
            format!(
                "the step took {} ms in the dry run, over [lint] max_step_secs = {max}",
                r.duration_ms
            ),
            Some("make it a batched revision, or run it outside the deploy".to_owned()),
        ));
    }
    found
}

/// Whether `sql` changes the schema: its first word (after comments) is `CREATE`, `ALTER`,
/// `DROP`, `TRUNCATE`, `COMMENT` or `GRANT`/`REVOKE`.
fn is_ddl(sql: &str) -> bool {
    let mut rest = sql.trim_start();
    loop {
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, r)| r).trim_start();
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, r)| r).trim_start();
        } else {
            break;
        }
    }
    let word: String = rest
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .collect::<String>()
        .to_ascii_uppercase();
    matches!(
        word.as_str(),
        "CREATE" | "ALTER" | "DROP" | "TRUNCATE" | "COMMENT" | "GRANT" | "REVOKE"
    )
}

/// squawk, set up for one revision.
struct Squawk<'a> {
    rules: &'a [Rule],
    pg_version: Option<squawk_linter::Version>,
    /// The timeouts wasmig sets for the revision's step.
    timeouts: &'a wasmig_plan::manifest::StatementTimeouts,
}

impl Squawk<'_> {
    /// squawk's violations in `text`, but the timeouts wasmig sets for the step itself.
    fn lint(
        &self,
        parse: &squawk_syntax::Parse<SourceFile>,
        text: &str,
        in_transaction: bool,
    ) -> Vec<squawk_linter::Violation> {
        let mut linter = Linter::from(self.rules.iter().copied());
        linter.settings.assume_in_transaction = in_transaction;
        if let Some(v) = self.pg_version {
            linter.settings.pg_version = v;
        }
        linter
            .lint(parse, text)
            .into_iter()
            .filter(|v| match v.code {
                Rule::RequireLockTimeout => self.timeouts.lock_timeout_secs.is_none(),
                Rule::RequireStatementTimeout => self.timeouts.statement_timeout_secs.is_none(),
                // squawk asks for `NOT VALID` on constraints PostgreSQL refuses it for;
                // they are reported by the rules meant for them, or by wasmig's own.
                Rule::ConstraintMissingNotValid => !cannot_be_not_valid(
                    parse,
                    v.text_range.start().into(),
                    v.text_range.end().into(),
                ),
                _ => true,
            })
            .collect()
    }
}

/// Whether the constraint a violation at `start..end` (bytes) points at is one PostgreSQL
/// cannot add as `NOT VALID` (only `CHECK` and `FOREIGN KEY` constraints can be): `UNIQUE`,
/// `PRIMARY KEY`, `EXCLUDE`.
fn cannot_be_not_valid(parse: &squawk_syntax::Parse<SourceFile>, start: usize, end: usize) -> bool {
    use squawk_syntax::SyntaxKind;
    use squawk_syntax::ast::AstNode as _;
    // The deepest node covering the range: the last of those in preorder.
    let Some(node) = parse
        .tree()
        .syntax()
        .descendants()
        .filter(|n| {
            let r = n.text_range();
            usize::from(r.start()) <= start && end <= usize::from(r.end())
        })
        .last()
    else {
        return false;
    };
    let kinds: Vec<SyntaxKind> = node.descendants_with_tokens().map(|e| e.kind()).collect();
    let has = |k: SyntaxKind| kinds.contains(&k);
    (has(SyntaxKind::UNIQUE_KW) || has(SyntaxKind::PRIMARY_KW) || has(SyntaxKind::EXCLUDE_KW))
        && !has(SyntaxKind::CHECK_KW)
        && !has(SyntaxKind::FOREIGN_KW)
        && !has(SyntaxKind::REFERENCES_KW)
}

/// The statements of `parse` that lock a table (or materialized view) against reads and
/// writes for as long as they rewrite or recompute it, with no online form in the same
/// statement: their byte ranges and what they do.
fn blocking_rewrites(
    parse: &squawk_syntax::Parse<SourceFile>,
) -> Vec<((usize, usize), &'static str)> {
    use squawk_syntax::SyntaxKind;
    use squawk_syntax::ast::{AstNode as _, Stmt};
    let mut found = Vec::new();
    for stmt in parse.tree().stmts() {
        let has = |kind: SyntaxKind| {
            stmt.syntax()
                .descendants_with_tokens()
                .any(|e| e.kind() == kind)
        };
        let what = match &stmt {
            Stmt::Vacuum(_) if has(SyntaxKind::FULL_KW) => {
                "VACUUM FULL rewrites the table under an ACCESS EXCLUSIVE lock: reads and writes wait for the whole rewrite"
            }
            Stmt::Cluster(_) => {
                "CLUSTER rewrites the table under an ACCESS EXCLUSIVE lock: reads and writes wait for the whole rewrite"
            }
            Stmt::AlterTable(_) | Stmt::AlterMaterializedView(_)
                if has(SyntaxKind::SET_TABLESPACE) =>
            {
                "SET TABLESPACE copies the table under an ACCESS EXCLUSIVE lock: reads and writes wait for the whole copy"
            }
            Stmt::AlterTable(_) if has(SyntaxKind::SET_LOGGED) || has(SyntaxKind::SET_UNLOGGED) => {
                "SET LOGGED / UNLOGGED rewrites the table under an ACCESS EXCLUSIVE lock (and an unlogged table is emptied by a crash and not replicated)"
            }
            Stmt::AlterTable(_) | Stmt::AlterMaterializedView(_)
                if has(SyntaxKind::SET_ACCESS_METHOD) =>
            {
                "SET ACCESS METHOD rewrites the table under an ACCESS EXCLUSIVE lock"
            }
            Stmt::Refresh(_) if !has(SyntaxKind::CONCURRENTLY_KW) => {
                "REFRESH MATERIALIZED VIEW without CONCURRENTLY holds an ACCESS EXCLUSIVE lock on the view while its query runs: every read of it waits"
            }
            _ => continue,
        };
        let range = stmt.syntax().text_range();
        found.push(((range.start().into(), range.end().into()), what));
    }
    found
}

/// What to do instead of a statement [`blocking_rewrites`] found.
const BLOCKING_REWRITE_HELP: &str = "run it in a maintenance window, or use the online form: REFRESH MATERIALIZED VIEW CONCURRENTLY (with a unique index), pg_repack or REPACK CONCURRENTLY (PostgreSQL 19) for a rewrite, a new table filled in batches for a move";

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
    [
        NON_ATOMIC,
        TRANSACTION_BLOCK,
        DDL_IN_BATCHED,
        NO_PROGRESS,
        SLOW_STEP,
        BLOCKING_REWRITE,
    ]
    .contains(&rule)
        || Rule::try_from(rule).is_ok()
}

/// Refuses an ignore naming an unknown rule or without a reason.
fn check_ignores(revision: &Revision, manifest_path: &std::path::Path) -> Result<(), ConfigError> {
    for LintIgnore { rule, reason } in &revision.manifest.lint.ignore {
        if !known_rule(rule) {
            return Err(ConfigError::new(format!(
                "invalid manifest {}: [[lint.ignore]] rule = {rule:?} is not a rule wasmig lint reports (squawk's or one of wasmig's: see `wasmig lint --help`)",
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

/// What one lint of one revision judged: which rules ran, so that an ignore of a rule
/// that did not run is not called unused. A project for several databases ignores a
/// PostgreSQL rule that the SQLite or MySQL lint never runs, and a component's ignore of a
/// dry-run rule stands through a static lint.
struct Judged<'a> {
    dialect: Dialect,
    /// squawk's rules in force (`[lint]` `include` and `exclude` applied).
    rules: &'a [Rule],
    /// The revision ran in a dry run (`--dry-run`), so the dry-run rules judged it.
    dry_run: bool,
    /// `[lint] max_step_secs` is set, so `slow-dry-run-step` can fire.
    max_step_secs: bool,
    /// A script of the revision runs statement by statement on this database
    /// (`transaction = "none"`, or DDL on MySQL), so `non-atomic-revision` judged it.
    one_by_one: bool,
}

impl Judged<'_> {
    /// Whether `rule` ran on `revision` in this lint.
    fn ran(&self, rule: &str, revision: &Revision) -> bool {
        let sql = revision.manifest.kind == Kind::Sql;
        let postgres = self.dialect == Dialect::Postgres;
        match rule {
            NON_ATOMIC => sql && self.one_by_one,
            BLOCKING_REWRITE | TRANSACTION_BLOCK => postgres && (sql || self.dry_run),
            DDL_IN_BATCHED => {
                self.dry_run && revision.manifest.transaction == TransactionMode::Batched
            }
            NO_PROGRESS => self.dry_run && !sql,
            SLOW_STEP => self.dry_run && self.max_step_secs,
            _ => {
                postgres
                    && (sql || self.dry_run)
                    && Rule::try_from(rule).is_ok_and(|r| self.rules.contains(&r))
            }
        }
    }
}

/// Moves the findings the manifest ignores into `report.ignored`, the rest into
/// `report.findings`, and reports each ignore that matched nothing although its rule ran.
fn apply_ignores(
    revision: &Revision,
    manifest_path: &std::path::Path,
    found: Vec<Finding>,
    judged: &Judged<'_>,
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
        if count == 0 && judged.ran(&ignore.rule, revision) {
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
        } else if count > 0 {
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
    fn ddl_is_recognised_after_comments_and_in_any_case() {
        use super::is_ddl;
        assert!(is_ddl("alter table t add column x int"));
        assert!(is_ddl("-- why\n/* how */ CREATE INDEX i ON t (x)"));
        assert!(!is_ddl("UPDATE t SET x = 1"));
        assert!(!is_ddl("-- ALTER TABLE t\nSELECT 1"));
        assert!(!is_ddl("WITH x AS (SELECT 1) SELECT * FROM x"));
    }

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

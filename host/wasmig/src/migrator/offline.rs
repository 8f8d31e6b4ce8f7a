//! `wasmig up --sql` / `down --sql`: the script a DBA would run by hand for a range of
//! revisions: each step's SQL and, as wasmig writes them, its version-table statements
//! (Alembic's offline mode, with wasmig's bookkeeping).
//!
//! SQL revisions are written without a database (none is contacted). A component's
//! statements exist only when it runs, so a range with component revisions is first run as
//! a dry run on the database (which must be where the range starts), every call kept whole
//! (a capturing journal), and each component step is written as the statements it sent,
//! its values as literals (`db::capture`): reads are shown as comments, writes made inside
//! a savepoint it rolled back are left out, and the statements after its first read are
//! marked as carrying values computed from what it read then.

use chrono::Utc;
use wasmig_plan::manifest::{Artifact, Kind, TransactionMode};

use crate::sandbox::journal::{Captured, CapturedCall, Journal};

use super::Migrator;
use crate::db::store::ScriptWriter;
use crate::db::{FinishedStep, StepRecord, VersionStore};
use crate::error::{ConfigError, GraphError};
use crate::graph::Direction;
use crate::revision;

/// Refuses a script the database's client would read otherwise than the server: one that
/// PostgreSQL's parser refuses (a backslash outside quotes and comments is a psql
/// meta-command, `\! cmd` a shell) or that a run refuses before it runs (transaction
/// control, a `COPY` to or from the client); on SQLite, a line
/// starting with `.` (a sqlite3 dot-command, `.shell cmd`).
fn for_the_client(script: &str, dialect: crate::bindings::Dialect) -> Result<(), String> {
    crate::db::split_statements(script, dialect).map_err(|e| e.describe())?;
    // What a run refuses before any of the script runs (transaction control, `COPY` to or
    // from the client, whose inline rows psql would take from the script's next lines).
    crate::db::check_script(script, dialect, &crate::db::Policy::TRUSTED)
        .map_err(|e| e.describe())?;
    if dialect == crate::bindings::Dialect::Sqlite
        && let Some(n) = script.lines().position(|l| l.starts_with('.'))
    {
        return Err(format!(
            "line {} starts with '.', which sqlite3 would run as one of its own commands",
            n + 1
        ));
    }
    Ok(())
}

impl Migrator {
    /// The script for `range` (`TARGET` from base, or `FROM:TARGET`) in `direction`.
    ///
    /// # Errors
    /// [`GraphError`] for the range, [`ConfigError`] for a component revision in it (or a
    /// downgrade without `FROM`), an unreadable script.
    pub async fn sql_script(&self, direction: Direction, range: &str) -> anyhow::Result<String> {
        let set = self.revisions()?;
        let (from, target) = match range.split_once(':') {
            Some((from, target)) => (Some(from), target),
            None => (None, range),
        };
        let heads: Vec<String> = match from {
            None if direction == Direction::Downgrade => {
                return Err(ConfigError::new(
                    "`down --sql` needs where the database is: FROM:TARGET (such as `down --sql c3:base`); --sql never asks the database",
                )
                .into());
            }
            None | Some("base") => Vec::new(),
            Some(from) => set
                .graph()
                .resolve_all(from)?
                .into_iter()
                .map(str::to_owned)
                .collect(),
        };
        let steps = set.plan(direction, &heads, target)?;
        let (url, _) = self.database_url()?;
        let dialect = url.dialect();
        if dialect == crate::bindings::Dialect::Mysql {
            return Err(ConfigError::new(
                "--sql is not available on MySQL yet: the mysql client runs commands of its own found in a script (`\\!`, `system`, `source`, `delimiter`), which wasmig does not keep a revision's SQL from reaching yet; apply the range with `up`",
            )
            .into());
        }
        let store = match dialect {
            crate::bindings::Dialect::Postgres => {
                VersionStore::new(dialect, Some(self.project.config.database_schema.clone()))
            }
            // SQLite has one schema; MySQL's is the database the URL names.
            crate::bindings::Dialect::Sqlite | crate::bindings::Dialect::Mysql => {
                VersionStore::new(dialect, None)
            }
        };
        // A dry run stops before a step that commits statement by statement: a component
        // after one cannot be captured (refused before the database is touched).
        let mut none_before: Option<&str> = None;
        for step in &steps {
            let revision = crate::history::find(set.revisions(), &step.revision);
            match (revision.manifest.kind, none_before) {
                (Kind::Sql, _)
                    if revision.manifest.transaction_for(step.action) == TransactionMode::None =>
                {
                    none_before.get_or_insert(&step.revision);
                }
                (Kind::Sql, _) | (_, None) => {}
                (_, Some(none)) => {
                    return Err(ConfigError::new(format!(
                        "revision {} is a component after {none} (transaction = \"none\"), which a dry run does not run, so the component's statements cannot be captured for --sql; end the range before {}, or apply up to {none} first",
                        step.revision, step.revision
                    ))
                    .into());
                }
            }
        }
        // Components: their calls, from a dry run of the range on the database.
        let captured = if steps.iter().any(|step| {
            crate::history::find(set.revisions(), &step.revision)
                .manifest
                .kind
                != Kind::Sql
        }) {
            Some(self.capture(&set, direction, target, &heads).await?)
        } else {
            None
        };
        let build_dir = crate::artifact::build_dir(&self.project);
        // `execution = "per-statement"` lays DDL out statement by statement, as a run would
        // (`auto` asks the server, and --sql has none: as PostgreSQL, in a transaction).
        let (execution, source) = self.project.config.execution()?;
        let per_statement = execution == crate::db::Execution::PerStatement;
        if per_statement && dialect == crate::bindings::Dialect::Sqlite {
            return Err(ConfigError::new(format!(
                "{source} asks to run DDL statement by statement, a setting for engines whose DDL is not transactional: SQLite's is; remove it, or point the project at PostgreSQL"
            ))
            .into());
        }
        let now = Utc::now();
        let mut w = ScriptWriter::new(dialect);
        let from_text = if heads.is_empty() {
            "base".to_owned()
        } else {
            heads.join(", ")
        };
        w.script.push_str(&format!(
            "-- wasmig {} --sql {range}: {from_text} -> {target} ({}), written {} by wasmig {}\n\
             -- Run it whole, stopping at the first error ({}). Each step commits with its\n\
             -- record in wasmig's tables, so `wasmig current` then tells where it stopped.\n\
             -- History rows carry the time this script was written.\n",
            if direction == Direction::Upgrade {
                "up"
            } else {
                "down"
            },
            dialect.name(),
            now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            env!("CARGO_PKG_VERSION"),
            match dialect {
                crate::bindings::Dialect::Postgres => "psql -v ON_ERROR_STOP=1 -f FILE",
                crate::bindings::Dialect::Sqlite => "sqlite3 -bail DB < FILE",
                crate::bindings::Dialect::Mysql => "mysql DB < FILE",
            },
        ));
        if dialect == crate::bindings::Dialect::Sqlite {
            // wasmig's own connections run with foreign keys on.
            w.script.push_str("PRAGMA foreign_keys = ON;\n");
        }
        if heads.is_empty() && direction == Direction::Upgrade {
            w.script.push_str("\n-- wasmig's tables\n");
            store.ensure(&mut w).await?;
        }
        for step in &steps {
            let revision = crate::history::find(set.revisions(), &step.revision);
            let artifact = revision::read_artifact(revision, &build_dir)?;
            let component;
            let script = match (&artifact, &captured) {
                (Artifact::Sql { up, down }, _) => {
                    if direction == Direction::Upgrade {
                        up
                    } else {
                        down
                    }
                }
                (Artifact::Component { .. }, Some(captured)) => {
                    let calls = captured.calls.iter().filter(|c| {
                        c.revision == step.revision && c.direction == step.action.as_str()
                    });
                    component =
                        component_script(dialect, calls, &captured.source).map_err(|e| {
                            ConfigError::new(format!(
                                "revision {}: its captured statements cannot be written as SQL: {e}",
                                step.revision,
                            ))
                        })?;
                    &component
                }
                (Artifact::Component { .. }, None) => {
                    return Err(GraphError::NotFound(step.revision.clone()).into());
                }
            };
            for_the_client(script, dialect).map_err(|why| {
                ConfigError::new(format!(
                    "revision {}: {why}; --sql does not write it (a run would refuse it too)",
                    step.revision
                ))
            })?;
            let checksum = artifact.checksum();
            let to_store = match direction {
                Direction::Upgrade => Some(revision.to_stored(&artifact)?),
                Direction::Downgrade => None,
            };
            let finished = FinishedStep {
                record: StepRecord {
                    remove: &step.remove_heads,
                    add: &step.add_heads,
                    revision: &step.revision,
                    direction: step.action.into(),
                    checksum: &checksum,
                    started_at: now,
                    finished_at: now,
                    error: None,
                    sqlstate: None,
                },
                artifact: to_store.as_ref(),
                clear_checkpoint: false,
                expected: None,
            };
            let mode = revision.manifest.transaction_for(direction);
            let none = mode == TransactionMode::None
                || (per_statement
                    && revision.manifest.kind == Kind::Sql
                    && mode == TransactionMode::PerMigration
                    && !crate::db::only_data(script, dialect));
            w.script.push_str(&format!(
                "\n-- Running {} {}: {}{}\n",
                if direction == Direction::Upgrade {
                    "upgrade"
                } else {
                    "downgrade"
                },
                step.revision,
                crate::bindings::text::shown(&revision.manifest.message),
                match (none, mode) {
                    (false, _) if revision.manifest.kind != Kind::Sql => format!(
                        " (a component: the statements a dry run captured{})",
                        if revision.manifest.transaction == TransactionMode::Batched {
                            ", all its batches in one transaction"
                        } else {
                            ""
                        }
                    ),
                    (false, _) => String::new(),
                    (true, TransactionMode::None) => format!(
                        " ({} = \"none\": statement by statement, then its record)",
                        revision.manifest.transaction_key(direction)
                    ),
                    (true, _) =>
                        format!(" (DDL, statement by statement under {source}, then its record)"),
                }
            ));
            if !none {
                w.script.push_str("BEGIN;\n");
                let timeouts = crate::runner::timeouts(&self.project, revision)?;
                if dialect == crate::bindings::Dialect::Postgres {
                    if let Some(lock) = timeouts.lock_timeout_secs {
                        w.script.push_str(&format!(
                            "SET LOCAL lock_timeout = '{}ms';\n",
                            (lock * 1000.0).round()
                        ));
                    }
                    if let Some(statement) = timeouts.statement_timeout_secs {
                        w.script.push_str(&format!(
                            "SET LOCAL statement_timeout = '{}ms';\n",
                            (statement * 1000.0).round()
                        ));
                    }
                }
            }
            w.script.push_str(script.trim_end());
            if !script.trim_end().ends_with(';') {
                w.script.push(';');
            }
            w.script.push('\n');
            if none {
                w.script.push_str("BEGIN;\n");
            }
            store.record_step(&mut w, &finished.record).await?;
            match finished.artifact {
                Some(stored) => store.store_artifact(&mut w, stored).await?,
                None => store.forget_artifact(&mut w, &step.revision).await?,
            }
            w.script.push_str("COMMIT;\n");
        }
        Ok(w.script)
    }
}

/// What a capturing dry run saw: every call of the range's components, and where and when
/// it ran (for the script's comments).
struct Capture {
    calls: Vec<Captured>,
    source: String,
}

impl Migrator {
    /// Runs `steps` (`direction` to `target`, from `heads`) as a dry run on the database,
    /// every batch of a batched revision included, keeping every component call whole.
    ///
    /// # Errors
    /// [`ConfigError`] when the database is not at `heads` (the script would start
    /// elsewhere than the dry run), or a component comes after a step a dry run does not
    /// run; the dry run's own errors (a failing step, with its exit code).
    async fn capture(
        &self,
        set: &crate::revision::RevisionSet,
        direction: Direction,
        target: &str,
        heads: &[String],
    ) -> anyhow::Result<Capture> {
        let sorted = |h: &[String]| {
            let mut h = h.to_vec();
            h.sort();
            h
        };
        let at = |h: &[String]| {
            if h.is_empty() {
                "base".to_owned()
            } else {
                h.join(", ")
            }
        };
        let elsewhere = |found: &[String]| {
            ConfigError::new(format!(
                "--sql writes a component's statements as a dry run on the database captures them, and the database is at {} where the script starts at {}; write it from where the database is (`--sql {}:{target}`), or point --database-url at a database at {}",
                at(found),
                at(heads),
                if found.is_empty() {
                    "base".to_owned()
                } else {
                    found.join(",")
                },
                at(heads),
            ))
        };
        // Asked first, so a database elsewhere runs nothing; the dry run's own start is
        // checked again below (another run may have moved it in between).
        let found = self.heads_if_exists().await?.unwrap_or_default();
        if sorted(&found) != sorted(heads) {
            return Err(elsewhere(&found).into());
        }
        // A batched step part-way would be captured from its checkpoint on, and the script
        // would leave the checkpoint behind.
        let part_way = self
            .connected_if_exists(async |db: &dyn crate::db::Database| db.checkpoints().await)
            .await?
            .unwrap_or_default();
        if let Some(c) = part_way.first() {
            return Err(ConfigError::new(format!(
                "revision {} is part-way through a batched {} (batch {} committed): --sql writes whole steps; finish it with `wasmig up`, or resolve it, first",
                c.revision,
                c.direction.as_str(),
                c.batches
            ))
            .into());
        }
        let inlines = self.database_url()?.0.dialect() == crate::bindings::Dialect::Sqlite;
        let journal = std::sync::Arc::new(Journal::capturing(inlines));
        let dry = Migrator {
            project: self.project.clone(),
            options: super::Options {
                dry_run: true,
                dry_run_batches: u64::MAX,
                atomic: false,
                journal: None,
                capture: Some(journal.clone()),
                workers: None,
                ..self.options.clone()
            },
            untrusted_setup: self.untrusted_setup.clone(),
            preloaded: self.preloaded.clone(),
            in_fleet: self.in_fleet,
        };
        let report = dry.run(direction, Some(target)).await?;
        if sorted(&report.heads_before) != sorted(heads) {
            return Err(elsewhere(&report.heads_before).into());
        }
        if let Some(skipped) = report.not_run.iter().find(|n| {
            set.find(&n.revision)
                .is_some_and(|r| r.manifest.kind != Kind::Sql)
        }) {
            return Err(ConfigError::new(format!(
                "revision {} is a component after a step a dry run does not run ({}), so its statements cannot be captured; end the range before it, or apply the steps before it first",
                skipped.revision, report.not_run[0].reason
            ))
            .into());
        }
        let (url, _) = self.database_url()?;
        Ok(Capture {
            calls: journal.take_captured()?,
            source: format!(
                "captured by a dry run on {} at {}",
                url,
                Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        })
    }
}

/// A component step's statements as a script: writes as statements with their values as
/// literals, reads as comments, what a rolled-back savepoint undid left out.
///
/// # Errors
/// A value or statement that cannot be written as SQL (`db::capture`).
fn component_script<'a>(
    dialect: crate::bindings::Dialect,
    calls: impl Iterator<Item = &'a Captured>,
    source: &str,
) -> Result<String, String> {
    use crate::db::capture::{copy_script, reads_only, statement_script};
    let described = |e: crate::bindings::SqlError| e.describe();
    /// The script so far, and what it has seen.
    struct Out {
        text: String,
        read: bool,
        marked: bool,
        wrote: bool,
    }
    impl Out {
        fn write(&mut self, statements: &str) {
            if self.read && !self.marked {
                self.text.push_str(
                    "-- The statements from here on carry values the component computed from rows it\n\
                     -- read above, as they were then: write this script again if they may change.\n",
                );
                self.marked = true;
            }
            self.wrote = true;
            self.text.push_str(statements);
        }
    }
    let mut out = Out {
        text: format!("-- The component's statements, {source}.\n"),
        read: false,
        marked: false,
        wrote: false,
    };
    // Open savepoints: their id, and where the script stood when each began.
    let mut open: Vec<(u64, usize, bool)> = Vec::new();
    let mut writes = 0;
    for captured in calls {
        match &captured.call {
            CapturedCall::Statement {
                call,
                sql,
                rows,
                count,
                wrote,
            } => {
                let is_read = matches!(*call, "query" | "query-columns" | "open-cursor")
                    && *wrote != Some(true)
                    && reads_only(sql, dialect);
                if is_read {
                    out.read = true;
                    // One line, whatever the statement's text holds.
                    let shown = crate::bindings::text::shown(
                        &sql.split_whitespace().collect::<Vec<_>>().join(" "),
                    );
                    if matches!(*call, "query" | "query-columns") {
                        out.text
                            .push_str(&format!("-- read ({count} row(s)): {shown}\n"));
                    } else {
                        out.text
                            .push_str(&format!("-- read through a cursor: {shown}\n"));
                    }
                } else {
                    writes += 1;
                    out.write(
                        &statement_script(dialect, sql, rows, &format!("wasmig_c{writes}"))
                            .map_err(described)?,
                    );
                    // A query not surely a read (one calling a function, say) runs again;
                    // what it returned still went to the component.
                    if matches!(*call, "query" | "query-columns" | "open-cursor") {
                        out.read = true;
                    }
                }
            }
            CapturedCall::Script(script) => {
                let script = script.trim().trim_end_matches(';').trim_end();
                out.write(&format!("{script}\n;\n"));
            }
            CapturedCall::Copy {
                table,
                columns,
                rows,
            } => {
                writes += 1;
                out.write(
                    &copy_script(dialect, table, columns, rows, &format!("wasmig_c{writes}"))
                        .map_err(described)?,
                );
            }
            CapturedCall::Fetch(n) => {
                out.read = true;
                out.text.push_str(&format!("--   fetched {n} row(s)\n"));
            }
            CapturedCall::Savepoint { id, ended: None } => {
                open.push((*id, out.text.len(), out.marked));
            }
            CapturedCall::Savepoint {
                id,
                ended: Some(rolled_back),
            } => {
                if let Some(pos) = open.iter().rposition(|(o, _, _)| o == id) {
                    let (_, mark, marked) = open[pos];
                    open.truncate(pos);
                    if *rolled_back {
                        out.text.truncate(mark);
                        out.marked = marked;
                        out.text.push_str(
                            "-- (a savepoint rolled back here: what it undid is left out)\n",
                        );
                    }
                }
            }
        }
    }
    if !out.wrote {
        out.text.push_str("-- (it wrote nothing)\n");
    }
    Ok(out.text)
}

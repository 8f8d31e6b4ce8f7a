//! `wasmig up --sql` / `down --sql`: the script a DBA would run by hand for a range of SQL
//! revisions, written without a database (none is contacted): each step's script and, as
//! wasmig writes them, its version-table statements (Alembic's offline mode, with wasmig's
//! bookkeeping). Component revisions are refused: their statements exist only when they
//! run.

use chrono::Utc;
use wasmig_plan::manifest::{Artifact, Kind, TransactionMode};

use super::Migrator;
use crate::db::store::ScriptWriter;
use crate::db::{FinishedStep, StepRecord, VersionStore};
use crate::error::{ConfigError, GraphError};
use crate::graph::Direction;
use crate::revision;

/// Refuses a script the database's client would read otherwise than the server: one that
/// PostgreSQL's parser refuses (a backslash outside quotes and comments is a psql
/// meta-command, `\! cmd` a shell) or that holds transaction control; on SQLite, a line
/// starting with `.` (a sqlite3 dot-command, `.shell cmd`).
fn for_the_client(script: &str, dialect: crate::bindings::Dialect) -> Result<(), String> {
    crate::db::split_statements(script, dialect).map_err(|e| e.describe())?;
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
        let store = match dialect {
            crate::bindings::Dialect::Postgres => {
                VersionStore::new(dialect, Some(self.project.config.database_schema.clone()))
            }
            crate::bindings::Dialect::Sqlite => VersionStore::new(dialect, None),
        };
        let build_dir = crate::artifact::build_dir(&self.project);
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
            if revision.manifest.kind != Kind::Sql {
                return Err(ConfigError::new(format!(
                    "revision {} is a component ({}): --sql writes SQL revisions only, and a component's statements exist only when it runs; see them with `wasmig {} --dry-run --journal FILE`, or end the range before it",
                    step.revision,
                    revision.dir.display(),
                    if direction == Direction::Upgrade { "up" } else { "down" },
                ))
                .into());
            }
            let artifact = revision::read_artifact(revision, &build_dir)?;
            let Artifact::Sql { up, down } = &artifact else {
                return Err(GraphError::NotFound(step.revision.clone()).into());
            };
            let script = if direction == Direction::Upgrade {
                up
            } else {
                down
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
            let none = revision.manifest.transaction == TransactionMode::None;
            w.script.push_str(&format!(
                "\n-- Running {} {}: {}{}\n",
                if direction == Direction::Upgrade {
                    "upgrade"
                } else {
                    "downgrade"
                },
                step.revision,
                crate::bindings::text::shown(&revision.manifest.message),
                if none {
                    " (transaction = \"none\": statement by statement, then its record)"
                } else {
                    ""
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

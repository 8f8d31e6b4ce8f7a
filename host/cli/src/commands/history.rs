//! `wasmig history`: the revisions from the heads down (`-r`, `-i`, `-v`), or with `--log`
//! the database's history log.

use serde_json::json;
use wasmig::error::ConfigError;
use wasmig::{Migrator, history};

use crate::args::Global;
use crate::output::out;

/// Prints the revision list or the log.
pub(super) async fn run(
    migrator: &Migrator,
    g: &Global,
    log: bool,
    rev_range: Option<&str>,
    indicate_current: bool,
) -> anyhow::Result<()> {
    if log {
        if rev_range.is_some() || indicate_current {
            return Err(ConfigError::new(
                "--log prints the database's log as it is; it cannot be combined with -r or -i",
            )
            .into());
        }
        return print_log(migrator, g).await;
    }
    // As in Alembic, `history -v` / `--verbose` shows every field.
    let verbose = g.verbose > 0;
    let set = migrator.revisions()?;
    let (graph, revisions) = (set.graph(), set.revisions());
    let range = rev_range.map(split_range).transpose()?;
    let wants_db = indicate_current
        || range.is_some_and(|(start, end)| start == "current" || end == "current");
    let current = if wants_db {
        migrator.heads().await?
    } else {
        Vec::new()
    };
    let ids: Vec<&str> = match range {
        Some((start, end)) => graph.range(&current, start, end)?,
        None => graph.walk(),
    };
    let marked: &[String] = if indicate_current { &current } else { &[] };
    if g.json {
        let out: Vec<_> = ids
            .iter()
            .map(|id| history::json(graph, revisions, id))
            .collect();
        out!("{}", json!({ "revisions": out }));
    } else {
        for id in ids {
            if verbose {
                out!("{}", history::verbose(graph, revisions, id, marked));
            } else {
                out!("{}", history::line(graph, revisions, id, marked));
            }
        }
    }
    Ok(())
}

/// `--log`: the history table as it is.
async fn print_log(migrator: &Migrator, g: &Global) -> anyhow::Result<()> {
    let history = migrator.history().await?;
    if g.json {
        out!("{}", json!({ "history": history }));
        return Ok(());
    }
    for h in &history {
        let error = match (&h.error, &h.sqlstate) {
            (Some(e), Some(code)) => format!("  {e} (SQLSTATE {code})"),
            (Some(e), None) => format!("  {e}"),
            _ => String::new(),
        };
        out!(
            "{} {:<9} {} {} ms  {}{error}",
            h.started_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            h.direction,
            h.revision,
            h.duration_ms,
            &h.checksum.chars().take(12).collect::<String>()
        );
    }
    Ok(())
}

/// `START:END` of `history -r`.
fn split_range(raw: &str) -> Result<(&str, &str), ConfigError> {
    raw.split_once(':').ok_or_else(|| {
        ConfigError::new(format!(
            "invalid --rev-range `{raw}`: use START:END, e.g. base:head, ae10:, :current"
        ))
    })
}

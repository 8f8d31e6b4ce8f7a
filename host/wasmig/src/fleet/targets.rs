//! A fleet's targets: the targets file's grammar, and the three places a list comes from (a
//! file, a command's output, a catalog query).
//!
//! A targets file has one target per line: a database URL (`postgres://…`, `sqlite:PATH`)
//! or a SQLite file's path (relative to the file's directory), then optional `key=value`
//! words: `schema=NAME` (a PostgreSQL schema of that database: wasmig's tables and the
//! migrations' `search_path`), `name=NAME` (what reports and the ledger call it) and
//! `group=NAME`. A line `[NAME]` starts a group; lines before any are in `default`. Groups
//! run in the order they first appear, each finished before the next starts: a canary group
//! goes first. `#` starts a comment line.
//!
//! Not here: running them (`fleet`).

use std::path::Path;

use crate::config::{Project, valid_schema};
use crate::db::DatabaseUrl;
use crate::error::ConfigError;

/// The group of targets listed before any `[GROUP]` line.
pub const DEFAULT_GROUP: &str = "default";

/// One database (or one schema of one) a fleet migrates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// What reports and the ledger call it: `name=`, else the URL without its password
    /// (and `#schema`).
    pub name: String,
    /// The URL wasmig connects with (a SQLite file as `sqlite:ABSOLUTE_PATH`).
    pub url: String,
    /// The PostgreSQL schema, for a schema target.
    pub schema: Option<String>,
    /// The group it runs in.
    pub group: String,
}

impl Target {
    /// Which database (and schema) it is, without the password: what the ledger knows it
    /// by beside its name, so a name moved to another database is not taken for done.
    pub fn identity(&self) -> String {
        let url =
            DatabaseUrl::parse(&self.url).map_or_else(|_| self.url.clone(), |u| u.to_string());
        match &self.schema {
            Some(schema) => format!("{url}#{schema}"),
            None => url,
        }
    }
}

/// Where a fleet's list comes from, as `--targets` or `[fleet]` say.
#[derive(Debug, Clone)]
pub enum Source {
    /// A targets file.
    File(std::path::PathBuf),
    /// A command's output, in the targets file's grammar.
    Command(Vec<String>),
    /// A query's rows, on the catalog database.
    Query {
        /// The SQL.
        sql: String,
        /// The catalog database (`None`: the project's database URL).
        catalog_url: Option<String>,
    },
}

impl Source {
    /// The source `[fleet]` in wasmig.toml names.
    ///
    /// # Errors
    /// [`ConfigError`] when it names none.
    pub fn configured(project: &Project) -> Result<Self, ConfigError> {
        let fleet = &project.config.fleet;
        if let Some(file) = &fleet.targets {
            return Ok(Source::File(project.root.join(file)));
        }
        if let Some(command) = &fleet.targets_command {
            return Ok(Source::Command(command.clone()));
        }
        if let Some(sql) = &fleet.targets_query {
            return Ok(Source::Query {
                sql: sql.clone(),
                catalog_url: fleet.catalog_url.clone(),
            });
        }
        Err(ConfigError::new(format!(
            "--fleet takes the targets from [fleet] in {}, which names none; set targets = \"FILE\", targets_command = [...] or targets_query = \"SELECT ...\", or pass --targets FILE",
            project.root.join(crate::config::CONFIG_FILE).display()
        )))
    }

    /// Reads the list.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, command or query and the line at fault; a
    /// [`crate::db::DbError`] when the catalog cannot be read.
    pub async fn load(&self, project: &Project) -> anyhow::Result<Vec<Target>> {
        match self {
            Source::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError::new(format!(
                        "cannot read the targets file {}: {e}",
                        path.display()
                    ))
                })?;
                let base = path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                let base = std::path::absolute(base).map_err(|e| {
                    ConfigError::new(format!(
                        "cannot resolve the directory of the targets file {}: {e}",
                        path.display()
                    ))
                })?;
                Ok(parse(&text, &path.display().to_string(), &base)?)
            }
            Source::Command(argv) => {
                let (program, args) = argv
                    .split_first()
                    .ok_or_else(|| ConfigError::new("fleet.targets_command is empty".to_owned()))?;
                let shown = argv.join(" ");
                let output = tokio::process::Command::new(program)
                    .args(args)
                    .current_dir(&project.root)
                    .stdin(std::process::Stdio::null())
                    .output()
                    .await
                    .map_err(|e| {
                        ConfigError::new(format!("cannot run fleet.targets_command `{shown}`: {e}"))
                    })?;
                if !output.status.success() {
                    let stderr = String::from_utf8_lossy(&output.stderr);
                    return Err(ConfigError::new(format!(
                        "fleet.targets_command `{shown}` failed ({}): {}",
                        output.status,
                        crate::bindings::text::shown(stderr.trim())
                    ))
                    .into());
                }
                let text = String::from_utf8(output.stdout).map_err(|_| {
                    ConfigError::new(format!(
                        "fleet.targets_command `{shown}` printed text that is not UTF-8"
                    ))
                })?;
                Ok(parse(
                    &text,
                    &format!("the output of `{shown}`"),
                    &project.root,
                )?)
            }
            Source::Query { sql, catalog_url } => {
                let (url, _) = project.database_url(catalog_url.as_deref())?;
                let rows = crate::db::catalog::catalog_rows(&url, sql).await?;
                let origin = format!("fleet.targets_query on {url}");
                let mut lines = Vec::with_capacity(rows.len());
                for (n, row) in rows.iter().enumerate() {
                    let Some(Some(location)) = row.get("target") else {
                        return Err(ConfigError::new(format!(
                            "{origin}: row {} has no `target` column (or it is NULL); select the target's URL or SQLite file AS target",
                            n + 1
                        ))
                        .into());
                    };
                    let mut line = vec![location.clone()];
                    for key in ["schema", "name", "group"] {
                        if let Some(Some(value)) = row.get(key) {
                            line.push(format!("{key}={value}"));
                        }
                    }
                    lines.push(line);
                }
                Ok(targets(
                    lines.iter().enumerate().map(|(n, words)| Line {
                        number: n + 1,
                        words: words.iter().map(String::as_str).collect(),
                        group: None,
                    }),
                    &origin,
                    &project.root,
                )?)
            }
        }
    }
}

/// One target's words, before they are checked.
struct Line<'a> {
    /// Its line (or row) number.
    number: usize,
    /// The location, then `key=value` words.
    words: Vec<&'a str>,
    /// The group of the `[GROUP]` line above it.
    group: Option<&'a str>,
}

/// Parses a targets file. `origin` names it in errors; relative SQLite paths are relative to
/// `base`.
///
/// # Errors
/// [`ConfigError`] naming the line at fault and what is wrong.
pub fn parse(text: &str, origin: &str, base: &Path) -> Result<Vec<Target>, ConfigError> {
    let mut group: Option<&str> = None;
    let mut lines = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(inner) = line.strip_prefix('[') {
            let Some(name) = inner.strip_suffix(']').map(str::trim) else {
                return Err(ConfigError::new(format!(
                    "{origin}, line {}: `{line}` opens a group without closing it; write [NAME]",
                    n + 1
                )));
            };
            check_word(name, "group", origin, n + 1)?;
            group = Some(name);
            continue;
        }
        lines.push(Line {
            number: n + 1,
            words: line.split_whitespace().collect(),
            group,
        });
    }
    targets(lines.into_iter(), origin, base)
}

/// Checks each line and makes its target; refuses the same database (or schema) twice and
/// the same name twice.
fn targets<'a>(
    lines: impl Iterator<Item = Line<'a>>,
    origin: &str,
    base: &Path,
) -> Result<Vec<Target>, ConfigError> {
    let mut found: Vec<Target> = Vec::new();
    let mut seen = std::collections::HashMap::new();
    let mut names = std::collections::HashMap::new();
    for line in lines {
        let at = |what: String| ConfigError::new(format!("{origin}, line {}: {what}", line.number));
        let (location, options) = line
            .words
            .split_first()
            .ok_or_else(|| at("an empty target".to_owned()))?;
        let (mut schema, mut name, mut group) = (None, None, line.group);
        for word in options {
            let Some((key, value)) = word.split_once('=') else {
                return Err(at(format!(
                    "`{word}` is not KEY=VALUE; a target is a URL or a SQLite file, then schema=, name= or group="
                )));
            };
            match key {
                "schema" => {
                    if !valid_schema(value) {
                        return Err(at(format!(
                            "schema={value} is not a lowercase SQL identifier (letters, digits and _, at most 63)"
                        )));
                    }
                    schema = Some(value.to_owned());
                }
                "name" => {
                    check_word(value, "name", origin, line.number)?;
                    name = Some(value.to_owned());
                }
                "group" => {
                    check_word(value, "group", origin, line.number)?;
                    group = Some(value);
                }
                other => {
                    return Err(at(format!(
                        "unknown option `{other}`; a target takes schema=, name= and group="
                    )));
                }
            }
        }
        let url = if location.contains("://") || location.starts_with("sqlite:") {
            let parsed = DatabaseUrl::parse(location).map_err(|e| at(e.to_string()))?;
            match parsed {
                DatabaseUrl::Sqlite { path } => DatabaseUrl::Sqlite {
                    path: lexical(&base.join(path)),
                },
                other => other,
            }
        } else {
            DatabaseUrl::Sqlite {
                path: lexical(&base.join(location)),
            }
        };
        if schema.is_some() && matches!(url, DatabaseUrl::Sqlite { .. }) {
            return Err(at(format!(
                "{location} is a SQLite database, which has no schemas; drop schema=, or give a postgres:// URL"
            )));
        }
        let shown = match &schema {
            Some(s) => format!("{url}#{s}"),
            None => url.to_string(),
        };
        let raw = match &url {
            DatabaseUrl::Postgres { url } | DatabaseUrl::Mysql { url } => url.clone(),
            DatabaseUrl::Sqlite { path } => format!("sqlite:{}", path.display()),
        };
        if let Some(first) = seen.insert((raw.clone(), schema.clone()), line.number) {
            return Err(at(format!(
                "{shown} is listed twice (first on line {first}); a fleet migrates each target once"
            )));
        }
        let name = name.unwrap_or(shown);
        if let Some(first) = names.insert(name.clone(), line.number) {
            return Err(at(format!(
                "the name {name} is used twice (first on line {first}); names tell targets apart in the report and the ledger"
            )));
        }
        found.push(Target {
            name,
            url: raw,
            schema,
            group: group.unwrap_or(DEFAULT_GROUP).to_owned(),
        });
    }
    Ok(found)
}

/// `path` without its `.` components, so `a.db` and `./a.db` are one file to the check for
/// targets listed twice (`..` stays: it may cross a link).
fn lexical(path: &Path) -> std::path::PathBuf {
    path.components().collect()
}

/// A group's or a target's name: printable, without spaces, `=`, `[` or `]`.
fn check_word(value: &str, what: &str, origin: &str, line: usize) -> Result<(), ConfigError> {
    let bad = value.is_empty()
        || value.len() > 200
        || value
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '=' | '[' | ']' | '#'));
    if bad {
        return Err(ConfigError::new(format!(
            "{origin}, line {line}: `{value}` is not a {what}: use 1 to 200 printable characters without spaces, =, #, [ or ]"
        )));
    }
    Ok(())
}

/// The groups in the order they first appear, each with its targets in list order.
pub fn groups(targets: &[Target]) -> Vec<(&str, Vec<&Target>)> {
    let mut groups: Vec<(&str, Vec<&Target>)> = Vec::new();
    for t in targets {
        match groups.iter_mut().find(|(g, _)| *g == t.group) {
            Some((_, members)) => members.push(t),
            None => groups.push((&t.group, vec![t])),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<Vec<Target>, ConfigError> {
        parse(text, "targets.txt", Path::new("/fleet"))
    }

    #[test]
    fn reads_urls_files_schemas_and_groups() {
        let t = parsed(
            "# tenants\n[canary]\npostgres://u:secret@h/a name=acme\n\n[rest]\npostgres://u@h/shared schema=t1\nt2.db\nsqlite:/abs/t3.db group=late\n",
        )
        .unwrap();
        assert_eq!(t.len(), 4);
        assert_eq!(t[0].name, "acme");
        assert_eq!(t[0].url, "postgres://u:secret@h/a");
        assert_eq!(t[0].group, "canary");
        assert_eq!(t[1].name, "postgres://u@h/shared#t1");
        assert_eq!(t[1].schema.as_deref(), Some("t1"));
        assert_eq!(t[2].url, "sqlite:/fleet/t2.db");
        assert_eq!(t[2].group, "rest");
        assert_eq!(t[3].url, "sqlite:/abs/t3.db");
        assert_eq!(t[3].group, "late");
        let g = groups(&t);
        let order: Vec<&str> = g.iter().map(|(name, _)| *name).collect();
        assert_eq!(order, ["canary", "rest", "late"]);
    }

    #[test]
    fn a_password_never_names_a_target() {
        let t = parsed("postgres://u:hunter2@h/a\n").unwrap();
        assert!(!t[0].name.contains("hunter2"), "{}", t[0].name);
    }

    #[test]
    fn refuses_what_it_cannot_run_naming_the_line() {
        for (text, expected) in [
            (
                "a.db\na.db\n",
                "line 2: sqlite:/fleet/a.db is listed twice (first on line 1)",
            ),
            (
                "a.db\n./a.db\n",
                "line 2: sqlite:/fleet/a.db is listed twice (first on line 1)",
            ),
            (
                "a.db name=x\nb.db name=x\n",
                "line 2: the name x is used twice",
            ),
            ("a.db schema=t1\n", "line 1: a.db is a SQLite database"),
            (
                "postgres://h/a schema=T1\n",
                "line 1: schema=T1 is not a lowercase",
            ),
            ("postgres://h/a shard=3\n", "line 1: unknown option `shard`"),
            ("postgres://h/a oops\n", "line 1: `oops` is not KEY=VALUE"),
            ("oracle://h/a\n", "line 1: "),
            ("[canary\n", "line 1: `[canary` opens a group"),
            ("[]\n", "line 1: `` is not a group"),
        ] {
            let err = parsed(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn the_same_schema_of_two_databases_is_two_targets() {
        let t = parsed(
            "postgres://h/a schema=t1\npostgres://h/b schema=t1\npostgres://h/a schema=t2\n",
        )
        .unwrap();
        assert_eq!(t.len(), 3);
    }
}

//! Diesel's migrations (diesel_migrations 2.x): one directory per migration directly in the
//! migrations directory (names starting with `.` skipped), holding `up.sql`, an optional
//! `down.sql` and an optional `metadata.toml` (`run_in_transaction = false`), which are the
//! only files read (the others in it are listed by name, files beside the directories
//! skipped). The version is
//! the directory name up to its first `_` with dashes removed; migrations run in version
//! order (compared as strings, as Diesel does); each file runs as one script. The table:
//! `__diesel_schema_migrations (version VARCHAR(50) PRIMARY KEY, run_on TIMESTAMP)`.

use std::collections::BTreeMap;

use super::{Reads, SourceFile, SourceMigration, without_bom};
use crate::error::ConfigError;

/// Diesel's history table.
pub const TABLE: &str = "__diesel_schema_migrations";
/// Reads it.
pub const QUERY: &str = "SELECT version FROM __diesel_schema_migrations ORDER BY version";

/// The files of one migration directory.
#[derive(Default)]
struct Dir<'a> {
    up: Option<&'a SourceFile>,
    down: Option<&'a SourceFile>,
    metadata: Option<&'a SourceFile>,
}

pub(super) fn reads(path: &str) -> Reads {
    match path.split_once('/') {
        Some((dir, name)) if !dir.starts_with('.') && !name.contains('/') => match name {
            "up.sql" | "down.sql" | "metadata.toml" => Reads::Contents,
            _ => Reads::Name,
        },
        _ => Reads::Nothing,
    }
}

pub(super) fn parse(files: &[SourceFile]) -> Result<Vec<SourceMigration>, ConfigError> {
    let mut dirs: BTreeMap<&str, Dir<'_>> = BTreeMap::new();
    for file in files {
        let Some((dir, name)) = file.path.split_once('/') else {
            continue; // a file beside the migrations (diesel.toml, a README): not one
        };
        if dir.starts_with('.') || name.contains('/') {
            continue;
        }
        let entry = dirs.entry(dir).or_default();
        match name {
            "up.sql" => entry.up = Some(file),
            "down.sql" => entry.down = Some(file),
            "metadata.toml" => entry.metadata = Some(file),
            _ => {}
        }
    }
    let mut migrations = Vec::new();
    for (dir, files) in dirs {
        let Some(up) = files.up else {
            return Err(ConfigError::new(format!(
                "diesel: {dir}/ has no up.sql; Diesel refuses such a directory too: add it or move the directory out"
            )));
        };
        let version = dir.split('_').next().unwrap_or(dir).replace('-', "");
        let no_transaction = files.metadata.is_some_and(|meta| !run_in_transaction(meta));
        migrations.push(SourceMigration {
            version,
            name: dir.split_once('_').map_or("", |(_, n)| n).to_owned(),
            source: format!("{dir}/"),
            up_file: up.path.clone(),
            down_file: files.down.map(|d| d.path.clone()),
            up: without_bom(up.text()?).to_owned(),
            down: files
                .down
                .map(|d| d.text().map(|t| without_bom(t).to_owned()))
                .transpose()?,
            // `metadata.toml` holds for both scripts.
            up_no_transaction: no_transaction,
            down_no_transaction: no_transaction,
            transaction_cut: false,
            checksum: None,
        });
    }
    migrations.sort_by(|a, b| a.version.cmp(&b.version));
    Ok(migrations)
}

/// `run_in_transaction` in a `metadata.toml`: true unless it says false. Diesel reads a
/// file it cannot parse as the default (`TomlMetadata::read_from_file(..).unwrap_or_default()`),
/// and so does this.
fn run_in_transaction(meta: &SourceFile) -> bool {
    #[derive(serde::Deserialize)]
    struct Metadata {
        run_in_transaction: Option<bool>,
    }
    meta.text()
        .ok()
        .and_then(|text| toml::from_str::<Metadata>(text).ok())
        .and_then(|m| m.run_in_transaction)
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::super::Format;
    use super::super::tests::{dir, rows};
    use super::super::transaction::tests::split;

    #[test]
    fn versions_drop_dashes_and_names_keep_spaces() {
        let files = dir(&[
            ("diesel.toml", "x"),
            (
                "2021-03-01-120000_add posts/up.sql",
                "CREATE TABLE posts ();",
            ),
            ("2021-03-01-120000_add posts/down.sql", "DROP TABLE posts;"),
            ("00000000000000_diesel_initial_setup/up.sql", "SELECT 1;"),
            (
                "2020-01-01-000000_idx/up.sql",
                "CREATE INDEX CONCURRENTLY i ON t (x);",
            ),
            (
                "2020-01-01-000000_idx/down.sql",
                "DROP INDEX CONCURRENTLY i;",
            ),
            (
                "2020-01-01-000000_idx/metadata.toml",
                "run_in_transaction = false\n",
            ),
            (".hidden/up.sql", "nope"),
            ("2022_unparsable/up.sql", "SELECT 1;"),
            ("2022_unparsable/metadata.toml", "run_in_transaction = no"),
        ]);
        let ms = Format::Diesel.parse(&files, &split).unwrap();
        let versions: Vec<_> = ms.iter().map(|m| m.version.as_str()).collect();
        assert_eq!(
            versions,
            ["00000000000000", "20200101000000", "20210301120000", "2022"]
        );
        assert!(
            !ms[3].up_no_transaction,
            "an unparsable metadata.toml is the default"
        );
        // `metadata.toml` holds for both scripts.
        assert!(ms[1].up_no_transaction && ms[1].down_no_transaction && !ms[2].up_no_transaction);
        assert_eq!(ms[2].name, "add posts");
        assert_eq!(ms[2].down.as_deref(), Some("DROP TABLE posts;"));
        assert_eq!(ms[0].down, None);
    }

    #[test]
    fn a_directory_without_up_sql_is_refused() {
        let err = Format::Diesel
            .parse(&dir(&[("2020_x/down.sql", "")]), &split)
            .unwrap_err();
        assert!(err.message.contains("2020_x/ has no up.sql"), "{err}");
    }

    #[test]
    fn the_table_lists_applied_versions() {
        let files = dir(&[("1_a/up.sql", ""), ("2_b/up.sql", ""), ("3_c/up.sql", "")]);
        let ms = Format::Diesel.parse(&files, &split).unwrap();
        let applied = Format::Diesel.applied(&ms, &rows(&[&[Some("1")], &[Some("2")]]));
        assert_eq!(applied, Ok(2));
    }
}

//! refinery's SQL migrations (`refinery_core::util`): files anywhere under the directory whose
//! name matches `^([U|V])(\d+(?:\.\d+)?)__(\w+)\.sql$`, the version a 32-bit integer, in version
//! order (`V` versioned and `U` unversioned alike). A line `-- refinery:noTransaction` runs the
//! file outside a transaction. refinery has no down migrations. Rust migrations
//! (`V1__name.rs`) are code compiled into the application: refused, named. The table:
//! `refinery_schema_history (version INT4 PRIMARY KEY, name, applied_on, checksum)`; its
//! checksum is a SipHash of name, version and SQL that wasmig does not recompute.

use super::{Reads, SourceFile, SourceMigration};
use crate::error::ConfigError;

/// refinery's history table.
pub const TABLE: &str = "refinery_schema_history";
/// Reads it.
pub const QUERY: &str = "SELECT version FROM refinery_schema_history ORDER BY version";

/// `(version text, name)` of a file name refinery reads with extension `ext`.
fn parse_name<'a>(name: &'a str, ext: &str) -> Option<(&'a str, &'a str)> {
    let stem = name.strip_suffix(ext)?;
    let rest = stem.strip_prefix(['U', 'V', '|'])?;
    let (version, name) = rest.split_once("__")?;
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let version_ok = match version.split_once('.') {
        Some((a, b)) => number(a) && number(b),
        None => number(version),
    };
    let name_ok = !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_');
    (version_ok && name_ok).then_some((version, name))
}

/// Whether a line is refinery's `noTransaction` annotation.
fn is_no_transaction(line: &str) -> bool {
    let dashes = line.len() - line.trim_start_matches('-').len();
    if dashes < 2 {
        return false;
    }
    let rest = &line[dashes..];
    let rest = rest.strip_prefix(char::is_whitespace).unwrap_or(rest);
    rest == "refinery:noTransaction"
}

pub(super) fn reads(path: &str) -> Reads {
    let name = path.rsplit('/').next().unwrap_or(path);
    if parse_name(name, ".sql").is_some() {
        Reads::Contents
    } else if parse_name(name, ".rs").is_some() {
        Reads::Name
    } else {
        Reads::Nothing
    }
}

pub(super) fn parse(files: &[SourceFile]) -> Result<Vec<SourceMigration>, ConfigError> {
    let rust: Vec<&str> = files
        .iter()
        .filter(|f| parse_name(f.name(), ".rs").is_some())
        .map(|f| f.path.as_str())
        .collect();
    if !rust.is_empty() {
        return Err(ConfigError::new(format!(
            "refinery: Rust migrations cannot be imported (their code is compiled into the application): {}; rewrite each as SQL or as a wasmig Rust revision, then import the SQL ones",
            rust.join(", ")
        )));
    }
    let mut migrations = Vec::new();
    for file in files {
        let Some((version, name)) = parse_name(file.name(), ".sql") else {
            continue;
        };
        let number: i32 = version.parse().map_err(|_| {
            ConfigError::new(format!(
                "refinery: {}: version {version} is not a 32-bit integer; refinery refuses it too",
                file.path
            ))
        })?;
        let text = file.text()?;
        migrations.push((
            number,
            SourceMigration {
                version: number.to_string(),
                name: name.to_owned(),
                source: file.path.clone(),
                up_file: file.path.clone(),
                down_file: None,
                up: text.to_owned(),
                down: None,
                up_no_transaction: text.lines().any(is_no_transaction),
                down_no_transaction: false,
                transaction_cut: false,
                checksum: None,
            },
        ));
    }
    migrations.sort_by_key(|(n, _)| *n);
    Ok(migrations.into_iter().map(|(_, m)| m).collect())
}

#[cfg(test)]
mod tests {
    use super::super::Format;
    use super::super::tests::dir;
    use super::super::transaction::tests::split;

    #[test]
    fn files_anywhere_in_version_order() {
        let files = dir(&[
            ("V10__later.sql", "SELECT 10;"),
            (
                "nested/V2__create_t.sql",
                "-- refinery:noTransaction\nCREATE INDEX CONCURRENTLY ti ON t (x);",
            ),
            // Sent as one query: several statements run in one implicit transaction.
            (
                "U3__unversioned.sql",
                "-- refinery:noTransaction\nSELECT 3; SELECT 4;",
            ),
            ("V4__bad-name.sql", "ignored: `-` is not a word character"),
            ("V5_one_underscore.sql", "ignored"),
        ]);
        let ms = Format::Refinery.parse(&files, &split).unwrap();
        let versions: Vec<_> = ms.iter().map(|m| m.version.as_str()).collect();
        assert_eq!(versions, ["2", "3", "10"]);
        assert!(ms[0].up_no_transaction && !ms[1].up_no_transaction);
        assert_eq!(ms[0].down, None);
    }

    #[test]
    fn rust_migrations_and_fractional_versions_are_refused() {
        let err = Format::Refinery
            .parse(&dir(&[("V1__a.sql", ""), ("V2__code.rs", "")]), &split)
            .unwrap_err();
        assert!(err.message.contains("V2__code.rs"), "{err}");
        let err = Format::Refinery
            .parse(&dir(&[("V1.5__a.sql", "")]), &split)
            .unwrap_err();
        assert!(err.message.contains("32-bit"), "{err}");
    }
}

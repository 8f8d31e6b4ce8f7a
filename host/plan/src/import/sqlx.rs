//! sqlx's migrations (sqlx-core 0.9 `migrate::source`): files directly in the directory named
//! `VERSION_DESCRIPTION.sql` (simple) or `.up.sql` / `.down.sql` (reversible), regular files
//! only (links followed); other files are skipped (not read), a non-integer version is an
//! error. The description is the rest of the name
//! without the suffix, `_` read as a space. A file starting with `-- no-transaction` runs
//! outside a transaction. The checksum is SHA-384 of the file. The table:
//! `_sqlx_migrations (version BIGINT PRIMARY KEY, description, installed_on, success BOOLEAN,
//! checksum BYTEA, execution_time)`.

use std::collections::BTreeMap;

use sha2::{Digest, Sha384};

use super::{
    AdoptRefused, AppliedRow, Pair, Reads, Row, SourceFile, SourceMigration, ToolChecksum, column,
    is_true,
};
use crate::error::ConfigError;

/// sqlx's history table.
pub const TABLE: &str = "_sqlx_migrations";
/// Reads it.
pub const QUERY: &str = "SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version";

pub(super) fn reads(path: &str) -> Reads {
    match path.split_once('_') {
        Some((_, rest)) if !path.contains('/') && rest.ends_with(".sql") => Reads::ContentsIfFile,
        _ => Reads::Nothing,
    }
}

pub(super) fn parse(files: &[SourceFile]) -> Result<Vec<SourceMigration>, ConfigError> {
    let mut pairs: BTreeMap<i64, Pair<'_>> = BTreeMap::new();
    for file in files.iter().filter(|f| f.is_top_level()) {
        let Some((version, rest)) = file.name().split_once('_') else {
            continue;
        };
        if !rest.ends_with(".sql") {
            continue;
        }
        let version: i64 = version.parse().map_err(|_| {
            ConfigError::new(format!(
                "sqlx: {}: the version before the first `_` is not an integer; sqlx refuses it too (expected `<VERSION>_<DESCRIPTION>.sql`)",
                file.path
            ))
        })?;
        let pair = pairs.entry(version).or_default();
        let taken = if rest.ends_with(".down.sql") {
            pair.down.replace(file).is_some()
        } else {
            let suffix = if rest.ends_with(".up.sql") {
                ".up.sql"
            } else {
                ".sql"
            };
            pair.up
                .replace((file, rest.trim_end_matches(suffix)))
                .is_some()
        };
        if taken {
            return Err(ConfigError::new(format!(
                "sqlx: {} is a second migration with version {version}; renumber one",
                file.path
            )));
        }
    }
    pairs
        .into_iter()
        .map(|(version, pair)| {
            let Some((up, description)) = pair.up else {
                return Err(ConfigError::new(format!(
                    "sqlx: version {version} has a .down.sql but no up migration; add it or remove the down file"
                )));
            };
            let text = up.text()?;
            let down = pair.down.map(SourceFile::text).transpose()?;
            Ok(SourceMigration {
                version: version.to_string(),
                name: description.replace('_', " "),
                source: up.path.clone(),
                up_file: up.path.clone(),
                down_file: pair.down.map(|d| d.path.clone()),
                up: text.to_owned(),
                down: down.map(str::to_owned),
                // Each file says so for itself.
                up_no_transaction: text.starts_with("-- no-transaction"),
                down_no_transaction: down.is_some_and(|d| d.starts_with("-- no-transaction")),
                transaction_cut: false,
                checksum: Some(ToolChecksum::Sha384(hex::encode(Sha384::digest(
                    &up.bytes,
                )))),
            })
        })
        .collect()
}

pub(super) fn applied(rows: &[Row]) -> Result<Vec<AppliedRow>, AdoptRefused> {
    rows.iter()
        .map(|row| {
            let version = column(TABLE, row, 0, "version")?;
            if !is_true(column(TABLE, row, 1, "success")?) {
                return Err(AdoptRefused::Dirty {
                    table: TABLE,
                    version: version.to_owned(),
                    state: "failed (success = false)",
                });
            }
            Ok(AppliedRow {
                version: version.to_owned(),
                checksum: Some(ToolChecksum::Sha384(
                    column(TABLE, row, 2, "checksum")?.to_ascii_lowercase(),
                )),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{dir, rows};
    use super::super::transaction::tests::split;
    use super::super::{AdoptRefused, Format};

    #[test]
    fn simple_and_reversible_files_in_version_order() {
        let files = dir(&[
            ("README.md", "x"),
            (
                "20_add_index.up.sql",
                "-- no-transaction\nCREATE INDEX CONCURRENTLY i ON t (x);",
            ),
            ("20_add_index.down.sql", "DROP INDEX i;"),
            ("3_create_t.sql", "CREATE TABLE t (x int);"),
            ("sub/4_nested.sql", "ignored: not directly in the directory"),
        ]);
        let ms = Format::Sqlx.parse(&files, &split).unwrap();
        assert_eq!(ms.len(), 2);
        assert_eq!(
            (ms[0].version.as_str(), ms[0].name.as_str()),
            ("3", "create t")
        );
        assert_eq!(ms[0].down, None);
        // The down file has no `-- no-transaction`: sqlx runs it in a transaction.
        assert!(ms[1].up_no_transaction && !ms[1].down_no_transaction);
        assert_eq!(ms[1].name, "add index");
        // As sqlx stores it: SHA-384 of the file's bytes.
        let expected = {
            use sha2::Digest;
            hex::encode(sha2::Sha384::digest(b"CREATE TABLE t (x int);"))
        };
        assert_eq!(
            ms[0].checksum,
            Some(super::super::ToolChecksum::Sha384(expected))
        );
    }

    #[test]
    fn a_version_that_is_not_an_integer_is_refused() {
        let err = Format::Sqlx
            .parse(&dir(&[("v1_x.sql", "")]), &split)
            .unwrap_err();
        assert!(err.message.contains("v1_x.sql"), "{err}");
    }

    #[test]
    fn a_failed_row_or_a_changed_file_is_refused() {
        let files = dir(&[("1_a.sql", "SELECT 1;"), ("2_b.sql", "SELECT 2;")]);
        let ms = Format::Sqlx.parse(&files, &split).unwrap();
        let hash = |s: &str| {
            use sha2::Digest;
            hex::encode(sha2::Sha384::digest(s.as_bytes()))
        };
        let ok = hash("SELECT 1;");
        assert_eq!(
            Format::Sqlx.applied(&ms, &rows(&[&[Some("1"), Some("true"), Some(&ok)]])),
            Ok(1)
        );
        let failed = Format::Sqlx
            .applied(&ms, &rows(&[&[Some("1"), Some("false"), Some(&ok)]]))
            .unwrap_err();
        assert!(matches!(failed, AdoptRefused::Dirty { .. }), "{failed}");
        let other = hash("SELECT 0;");
        let changed = Format::Sqlx
            .applied(&ms, &rows(&[&[Some("1"), Some("t"), Some(&other)]]))
            .unwrap_err();
        assert!(
            matches!(changed, AdoptRefused::Checksum { .. }),
            "{changed}"
        );
    }
}

//! dbmate's migrations (`pkg/dbmate/migration.go`): files directly in the directory matching
//! `^(\d+).*\.sql$`, in file-name order, the version the leading digits (kept as text, as
//! dbmate stores it). A file holds an up block from its `-- migrate:up` line to its
//! `-- migrate:down` line and a down block from there to the end, each run as one script
//! (directive lines included: they are comments); nothing but blank and comment lines may
//! precede the up block. Options follow the directive: `transaction:false`. The table:
//! `schema_migrations (version VARCHAR(128) PRIMARY KEY)`, one row per applied migration.

use super::{Reads, SourceFile, SourceMigration};
use crate::error::ConfigError;

/// dbmate's history table.
pub const TABLE: &str = "schema_migrations";
/// Reads it.
pub const QUERY: &str = "SELECT version FROM schema_migrations ORDER BY version";

/// Whether `line` is the directive `-- migrate:<word>` as dbmate's patterns find it: for
/// `up`, followed by the end of the line or whitespace; for `down`, by at most one option.
fn is_directive(line: &str, word: &str) -> bool {
    let Some(rest) = line.strip_prefix("--") else {
        return false;
    };
    let Some(rest) = rest
        .trim_start_matches([' ', '\t'])
        .strip_prefix("migrate:")
        .and_then(|r| r.strip_prefix(word))
    else {
        return false;
    };
    if rest.trim().is_empty() {
        return true;
    }
    let starts_with_space = rest.starts_with(char::is_whitespace);
    match word {
        "up" => starts_with_space,
        _ => starts_with_space && !rest.trim().contains(char::is_whitespace),
    }
}

/// The byte offset of the first line that is the directive.
fn find(text: &str, word: &str) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if is_directive(line.trim_end_matches(['\n', '\r']), word) {
            return Some(offset);
        }
        offset += line.len();
    }
    None
}

/// Whether a block's directive line sets `transaction:false`.
fn in_transaction(block: &str) -> bool {
    let first = block.lines().next().unwrap_or("");
    !first
        .split_whitespace()
        .filter_map(|pair| {
            let mut parts = pair.split(':');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(k), Some(v), None) => Some((k, v)),
                _ => None,
            }
        })
        .any(|(k, v)| k == "transaction" && v == "false")
}

/// Whether dbmate takes an entry directly in the directory, by its name, as a migration.
fn is_migration(name: &str) -> bool {
    name.ends_with(".sql") && name.starts_with(|c: char| c.is_ascii_digit())
}

pub(super) fn reads(path: &str) -> Reads {
    if !path.contains('/') && is_migration(path) {
        Reads::Contents
    } else {
        Reads::Nothing
    }
}

pub(super) fn parse(files: &[SourceFile]) -> Result<Vec<SourceMigration>, ConfigError> {
    let mut files: Vec<&SourceFile> = files
        .iter()
        .filter(|f| f.is_top_level() && is_migration(f.name()))
        .collect();
    files.sort_by(|a, b| a.name().cmp(b.name()));
    files
        .into_iter()
        .map(|file| {
            let name = file.name();
            let digits = name.len() - name.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            let text = file.text()?;
            let refuse = |why: &str| {
                Err(ConfigError::new(format!(
                    "dbmate: {}: {why}; dbmate refuses it too",
                    file.path
                )))
            };
            let Some(up) = find(text, "up") else {
                return refuse("no `-- migrate:up` block");
            };
            let Some(down) = find(text, "down") else {
                return refuse("no `-- migrate:down` block");
            };
            if up > down {
                return refuse("`-- migrate:down` comes before `-- migrate:up`");
            }
            let before = text[..up]
                .lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with("--"));
            if before {
                return refuse("statements precede the `-- migrate:up` block");
            }
            let (up_block, down_block) = (&text[up..down], &text[down..]);
            Ok(SourceMigration {
                version: name[..digits].to_owned(),
                name: name[digits..]
                    .trim_end_matches(".sql")
                    .trim_start_matches('_')
                    .to_owned(),
                source: file.path.clone(),
                up_file: file.path.clone(),
                down_file: Some(file.path.clone()),
                up: up_block.to_owned(),
                down: Some(down_block.to_owned()),
                // Each block's directive says so for itself.
                up_no_transaction: !in_transaction(up_block),
                down_no_transaction: !in_transaction(down_block),
                transaction_cut: false,
                checksum: None,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::Format;
    use super::super::tests::dir;
    use super::super::transaction::tests::split;
    use crate::manifest::TransactionMode;

    #[test]
    fn blocks_are_split_at_the_directives_with_their_options() {
        let files = dir(&[
            (
                "20200102_index.sql",
                "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY i ON t (x);\n\n-- migrate:down\nDROP INDEX i;\n",
            ),
            (
                "20200101_create_t.sql",
                "-- a comment first is fine\n\n--migrate:up\nCREATE TABLE t (x int);\n-- migrate:down\nDROP TABLE t;\n",
            ),
            ("schema.sql", "not a migration"),
        ]);
        let ms = Format::Dbmate.parse(&files, &split).unwrap();
        assert_eq!(ms.len(), 2);
        assert_eq!(
            (ms[0].version.as_str(), ms[0].name.as_str()),
            ("20200101", "create_t")
        );
        assert_eq!(ms[0].up, "--migrate:up\nCREATE TABLE t (x int);\n");
        assert_eq!(
            ms[0].down.as_deref(),
            Some("-- migrate:down\nDROP TABLE t;\n")
        );
        assert!(!ms[0].up_no_transaction && !ms[0].down_no_transaction);
        // Each block as its directive says: dbmate runs the down block in a transaction.
        assert!(ms[1].up_no_transaction && !ms[1].down_no_transaction);
        assert_eq!(ms[1].transaction(), TransactionMode::None);
        assert_eq!(
            ms[1].downgrade_transaction(),
            Some(TransactionMode::PerMigration)
        );
        assert_eq!(
            ms[1].up,
            "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY i ON t (x);\n\n"
        );
    }

    #[test]
    fn a_file_dbmate_refuses_is_refused() {
        for (text, why) in [
            (
                "SELECT 1;\n-- migrate:up\n-- migrate:down\n",
                "statements precede",
            ),
            ("-- migrate:up\nSELECT 1;\n", "no `-- migrate:down`"),
            ("-- migrate:down\n-- migrate:up\n", "comes before"),
            ("-- migrate:upx\n-- migrate:down\n", "no `-- migrate:up`"),
        ] {
            let err = Format::Dbmate
                .parse(&dir(&[("1_x.sql", text)]), &split)
                .unwrap_err();
            assert!(err.message.contains(why), "{text:?}: {err}");
        }
    }
}

//! golang-migrate's migrations (`source/parse.go`): entries directly in the directory (not
//! directories) matching `^([0-9]+)_(.*)\.(down|up)\.(.*)$` (others skipped), the version an
//! unsigned integer. Each file runs as one simple query, with no transaction of
//! golang-migrate's own: PostgreSQL runs a query of several statements in one implicit
//! transaction (wasmig's default mode, `transaction = "per-migration"`), and a query of one
//! statement that refuses a transaction block (`CREATE INDEX CONCURRENTLY`, `VACUUM`)
//! outside one (`transaction = "none"`). Statements are counted by PostgreSQL's parser; a
//! file it cannot read stays per-migration. With the driver's `x-multi-statement` URL option
//! (not in the directory: `wasmig import --x-multi-statement` says so), a file is cut after
//! every `;` (`multistmt.Parse`, a plain byte search) and each piece runs on its own: a file
//! of several statements is `none`, and one cut inside a statement is refused. The
//! table holds one row, the current version: `schema_migrations (version BIGINT PRIMARY KEY,
//! dirty BOOLEAN)`; every migration up to it is applied.

use std::collections::BTreeMap;

use super::transaction::{Split, runs_alone};
use super::{AdoptRefused, Pair, Reads, Row, SourceFile, SourceMigration, column, is_true};
use crate::error::ConfigError;

/// golang-migrate's history table.
pub const TABLE: &str = "schema_migrations";
/// Reads it.
pub const QUERY: &str = "SELECT version, dirty FROM schema_migrations";

/// `(version, title, is_up)` of a file name the tool's pattern matches.
fn parse_name(name: &str) -> Option<(u64, &str, bool)> {
    let (digits, rest) = name.split_once('_')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // `(.*)` is greedy: the last `.up.` or `.down.` ends the title.
    let up = rest.rfind(".up.").map(|i| (i, true));
    let down = rest.rfind(".down.").map(|i| (i, false));
    let (at, is_up) = up.into_iter().chain(down).max_by_key(|(i, _)| *i)?;
    Some((digits.parse().ok()?, &rest[..at], is_up))
}

pub(super) fn reads(path: &str) -> Reads {
    if !path.contains('/') && parse_name(path).is_some() {
        Reads::Contents
    } else {
        Reads::Nothing
    }
}

/// Whether golang-migrate run with `x-multi-statement` sends `text` as several statements,
/// each autocommitted (`transaction = "none"` runs the same ones one by one). It cuts the
/// file after every `;`, inside strings, bodies and comments too, and sends each piece that
/// is not blank: a piece that is not one whole statement (or only comments) is refused, as
/// PostgreSQL refuses it there. A file the parser cannot read at all is refused too.
fn sent_cut(text: &str, file: &str, split: &Split) -> Result<bool, ConfigError> {
    let mut statements = 0;
    for piece in text.split_inclusive(';') {
        if piece.trim().is_empty() {
            continue;
        }
        match split(piece) {
            Some(s) if s.len() <= 1 => statements += s.len(),
            _ => {
                let shown: String = piece.trim().chars().take(80).collect();
                return Err(ConfigError::new(format!(
                    "golang-migrate: {file}: with x-multi-statement golang-migrate cuts a file after every `;`, inside strings, bodies and comments too, and sends `{shown}` on its own, which is not a statement PostgreSQL can read (golang-migrate fails there too); if it ran without that option, import without --x-multi-statement"
                )));
            }
        }
    }
    Ok(statements > 1)
}

pub(super) fn parse(
    files: &[SourceFile],
    split: &Split,
    multi_statement: bool,
) -> Result<Vec<SourceMigration>, ConfigError> {
    let mut pairs: BTreeMap<u64, Pair<'_>> = BTreeMap::new();
    for file in files.iter().filter(|f| f.is_top_level()) {
        let Some((version, title, is_up)) = parse_name(file.name()) else {
            continue;
        };
        let pair = pairs.entry(version).or_default();
        if !pair.put(file, is_up.then_some(title)) {
            return Err(ConfigError::new(format!(
                "golang-migrate: {} duplicates another migration file of version {version}; golang-migrate refuses that too",
                file.path
            )));
        }
    }
    let cut = |text: &str, file: &str| {
        if multi_statement {
            sent_cut(text, file, split)
        } else {
            Ok(false)
        }
    };
    pairs
        .into_iter()
        .map(|(version, pair)| {
            let Some((up, title)) = pair.up else {
                return Err(ConfigError::new(format!(
                    "golang-migrate: version {version} has a down file but no up file; add one (it may be empty)"
                )));
            };
            let text = up.text()?;
            let down = pair.down.map(SourceFile::text).transpose()?;
            Ok(SourceMigration {
                version: version.to_string(),
                name: title.to_owned(),
                source: up.path.clone(),
                up_file: up.path.clone(),
                down_file: pair.down.map(|d| d.path.clone()),
                up: text.to_owned(),
                down: down.map(str::to_owned),
                // golang-migrate sends each file as one query, without a transaction (or,
                // with x-multi-statement, each of its statements as one).
                up_no_transaction: cut(text, &up.path)? || runs_alone(text, split),
                down_no_transaction: match (down, pair.down) {
                    (Some(d), Some(file)) => cut(d, &file.path)? || runs_alone(d, split),
                    _ => false,
                },
                transaction_cut: false,
                checksum: None,
            })
        })
        .collect()
}

/// Every migration up to the recorded version; refuses a dirty one.
pub(super) fn applied(migrations: &[SourceMigration], rows: &[Row]) -> Result<usize, AdoptRefused> {
    let Some(row) = rows.first() else {
        return Ok(0);
    };
    if rows.len() > 1 {
        return Err(AdoptRefused::Unreadable {
            table: TABLE,
            what: "golang-migrate keeps one row, this table has several (is it dbmate's?)".into(),
        });
    }
    let version = column(TABLE, row, 0, "version")?;
    if is_true(column(TABLE, row, 1, "dirty")?) {
        return Err(AdoptRefused::Dirty {
            table: TABLE,
            version: version.to_owned(),
            state: "dirty",
        });
    }
    // golang-migrate's "no version" is -1 (the row is usually deleted instead).
    if version == "-1" {
        return Ok(0);
    }
    migrations
        .iter()
        .position(|m| m.version == version)
        .map(|i| i + 1)
        .ok_or(AdoptRefused::Unknown {
            table: TABLE,
            version: version.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{dir, rows};
    use super::super::transaction::tests::split;
    use super::super::{AdoptRefused, Format, ToolOptions};
    use crate::manifest::TransactionMode;

    #[test]
    fn only_a_file_of_one_statement_refusing_a_transaction_block_runs_outside_one() {
        let files = dir(&[
            (
                "1_a.up.sql",
                "-- alone\nCREATE INDEX CONCURRENTLY i ON t (x);\n",
            ),
            (
                "2_b.up.sql",
                "CREATE TABLE tips (t text);\nINSERT INTO tips VALUES ('Nightly job; vacuum runs at 3am');\n",
            ),
            (
                "3_c.up.sql",
                "CREATE TABLE u (x int);\nCREATE INDEX CONCURRENTLY j ON u (x);\n",
            ),
            ("4_d.up.sql", "VACUUM t"),
        ]);
        let ms = Format::GolangMigrate.parse(&files, &split).unwrap();
        let none: Vec<bool> = ms.iter().map(|m| m.up_no_transaction).collect();
        // The third fails in golang-migrate too (one implicit transaction): it stays one.
        assert_eq!(none, [true, false, false, true]);
        // A file the parser cannot read: per-migration, the conservative answer.
        let ms = Format::GolangMigrate
            .parse(&dir(&[("1_a.up.sql", "VACUUM t;")]), &|_: &str| None)
            .unwrap();
        assert!(!ms[0].up_no_transaction);
        // The down file on its own: one statement refusing a block runs outside one, the
        // up file of two statements in one.
        let ms = Format::GolangMigrate
            .parse(
                &dir(&[
                    (
                        "1_a.up.sql",
                        "CREATE TABLE u (x int);\nCREATE INDEX j ON u (x);\n",
                    ),
                    ("1_a.down.sql", "DROP INDEX CONCURRENTLY j;\n"),
                ]),
                &split,
            )
            .unwrap();
        assert_eq!(
            (ms[0].transaction(), ms[0].downgrade_transaction()),
            (TransactionMode::PerMigration, Some(TransactionMode::None))
        );
    }

    #[test]
    fn with_x_multi_statement_a_file_of_several_statements_runs_one_by_one() {
        let files = dir(&[
            (
                "1_a.up.sql",
                "CREATE TABLE u (x int);\nCREATE INDEX CONCURRENTLY j ON u (x);\n-- done\n",
            ),
            ("1_a.down.sql", "DROP TABLE u;\n"),
            ("2_b.up.sql", "BEGIN;\nCREATE TABLE v ();\nCOMMIT;\n"),
        ]);
        let multi = ToolOptions {
            multi_statement: true,
        };
        let ms = Format::GolangMigrate
            .parse_with(&files, &split, multi)
            .unwrap();
        // The up file's two statements each on their own; the down file's one in a
        // transaction; a file's own BEGIN and COMMIT (sent on their own too) still make one.
        assert!(ms[0].up_no_transaction && !ms[0].down_no_transaction);
        assert!(!ms[1].up_no_transaction && ms[1].transaction_cut);
        // Without the option, golang-migrate sends the first file as one query.
        let ms = Format::GolangMigrate.parse(&files, &split).unwrap();
        assert!(!ms[0].up_no_transaction);
        // Another tool has no such option.
        let err = Format::Dbmate.parse_with(&[], &split, multi).unwrap_err();
        assert!(err.message.contains("golang-migrate's option"), "{err}");
        // A piece that is not a statement alone (the test splitter reads no further than
        // it must: a piece it makes two statements of stands for what PostgreSQL refuses).
        let err = Format::GolangMigrate
            .parse_with(
                &dir(&[("1_a.up.sql", "SELECT 1;\nSELECT 2 -- x\n")]),
                &|t: &str| {
                    Some(if t.contains("SELECT 2") {
                        vec!["SELECT", "2"]
                    } else {
                        vec![t]
                    })
                },
                multi,
            )
            .unwrap_err();
        assert!(
            err.message.contains("1_a.up.sql") && err.message.contains("`SELECT 2 -- x`"),
            "{err}"
        );
    }

    #[test]
    fn a_begin_commit_block_is_cut_and_other_control_refused_naming_the_file() {
        let files = dir(&[
            ("1_a.up.sql", "BEGIN;\nCREATE TABLE a ();\nCOMMIT;\n"),
            ("1_a.down.sql", "BEGIN;\nDROP TABLE a;\nCOMMIT;\n"),
        ]);
        let ms = Format::GolangMigrate.parse(&files, &split).unwrap();
        assert_eq!(ms[0].up, "\nCREATE TABLE a ();\n\n");
        assert_eq!(ms[0].down.as_deref(), Some("\nDROP TABLE a;\n\n"));
        assert!(ms[0].transaction_cut && !ms[0].up_no_transaction);
        let files = dir(&[
            ("1_a.up.sql", "CREATE TABLE a ();\n"),
            ("1_a.down.sql", "DROP TABLE a;\nCOMMIT;\n"),
        ]);
        let err = Format::GolangMigrate.parse(&files, &split).unwrap_err();
        assert!(
            err.message
                .starts_with("golang-migrate: 1_a.down.sql (down): statement 2 of 2 (`COMMIT`)"),
            "{err}"
        );
    }

    #[test]
    fn up_and_down_files_pair_by_version() {
        let files = dir(&[
            ("1_init.up.sql", "CREATE TABLE a ();"),
            ("1_init.down.sql", "DROP TABLE a;"),
            ("10_add.up.sql", "CREATE TABLE b ();"),
            ("9_x.up.sql", "SELECT 9;"),
            ("notes.txt", ""),
        ]);
        let ms = Format::GolangMigrate.parse(&files, &split).unwrap();
        let versions: Vec<_> = ms.iter().map(|m| m.version.as_str()).collect();
        assert_eq!(versions, ["1", "9", "10"]);
        assert_eq!(ms[0].down.as_deref(), Some("DROP TABLE a;"));
        assert_eq!(ms[1].down, None);
    }

    #[test]
    fn the_one_row_names_the_last_applied_version() {
        let files = dir(&[("1_a.up.sql", ""), ("2_b.up.sql", ""), ("3_c.up.sql", "")]);
        let ms = Format::GolangMigrate.parse(&files, &split).unwrap();
        let applied = |r: &[Option<&str>]| Format::GolangMigrate.applied(&ms, &rows(&[r]));
        assert_eq!(applied(&[Some("2"), Some("false")]), Ok(2));
        assert!(matches!(
            applied(&[Some("2"), Some("true")]),
            Err(AdoptRefused::Dirty { .. })
        ));
        assert!(matches!(
            applied(&[Some("7"), Some("false")]),
            Err(AdoptRefused::Unknown { .. })
        ));
        assert_eq!(Format::GolangMigrate.applied(&ms, &[]), Ok(0));
    }
}

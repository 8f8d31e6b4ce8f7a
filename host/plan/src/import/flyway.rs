//! Flyway's SQL migrations: files anywhere under the directory named `V<version>__<desc>.sql`
//! (versioned) and `U<version>__<desc>.sql` (its undo), the version digits separated by `.`
//! or `_` (stored with `.`), ordered numerically part by part; the description with `_` read
//! as a space. A script configuration file beside it (`V1__x.sql.conf`) may say
//! `executeInTransaction=false`; without one, Flyway's PostgreSQL parser decides: a
//! migration holding a statement it knows PostgreSQL refuses in a transaction (`CREATE INDEX
//! CONCURRENTLY`, `VACUUM`...) runs outside one. (Flyway refuses a migration mixing those
//! with other statements unless `mixed=true`, which runs it outside a transaction: such a
//! file imports as `transaction = "none"`, as Flyway ran it if it ran it at all.) Statements
//! are split by PostgreSQL's parser; a file it cannot read stays in a transaction. Only
//! those files are read; the others are skipped as Flyway skips them. Refused: repeatable migrations (`R__`), which wasmig has no
//! counterpart for, and files using placeholders (`${...}`), which Flyway replaces before
//! running (so the file is not what ran). The checksum is Flyway's CRC32 of the file's lines
//! without their line breaks. The table: `flyway_schema_history (installed_rank, version,
//! description, type, script, checksum INT, ..., success BOOLEAN)`.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use super::transaction::{Split, flyway_refuses_transaction};
use super::{
    AdoptRefused, AppliedRow, Reads, Row, SourceFile, SourceMigration, ToolChecksum, column,
    is_true, without_bom,
};
use crate::error::ConfigError;

/// Flyway's history table.
pub const TABLE: &str = "flyway_schema_history";
/// Reads it, oldest first.
pub const QUERY: &str =
    "SELECT version, type, checksum, success FROM flyway_schema_history ORDER BY installed_rank";

/// `(prefix, version, description)` of a file name Flyway reads as a SQL migration.
fn parse_name(name: &str) -> Option<(char, String, &str)> {
    let stem = name.strip_suffix(".sql")?;
    let prefix = stem.chars().next()?;
    let (version, description) = stem[prefix.len_utf8()..].split_once("__")?;
    if prefix == 'R' && version.is_empty() {
        return Some(('R', String::new(), description));
    }
    if !matches!(prefix, 'V' | 'U') {
        return None;
    }
    let version = version.replace('_', ".");
    let valid = !version.is_empty()
        && version
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    valid.then_some((prefix, version, description))
}

pub(super) fn reads(path: &str) -> Reads {
    let name = path.rsplit('/').next().unwrap_or(path);
    let conf_of = name.strip_suffix(".conf").unwrap_or(name);
    if parse_name(conf_of).is_some() {
        Reads::Contents
    } else {
        Reads::Nothing
    }
}

/// Flyway's version order: numeric parts, trailing zero parts ignored (`1.0` = `1`).
fn compare(a: &str, b: &str) -> Ordering {
    fn parts(v: &str) -> Vec<&str> {
        let mut parts: Vec<&str> = v.split('.').map(|p| p.trim_start_matches('0')).collect();
        while parts.last() == Some(&"") {
            parts.pop();
        }
        parts
    }
    let (a, b) = (parts(a), parts(b));
    for (x, y) in a.iter().zip(&b) {
        match x.len().cmp(&y.len()).then_with(|| x.cmp(y)) {
            Ordering::Equal => {}
            other => return other,
        }
    }
    a.len().cmp(&b.len())
}

/// Flyway's checksum: CRC32 over each line's UTF-8 bytes, line breaks (`\n`, `\r`, `\r\n`)
/// left out, a byte-order mark at the start dropped; stored as a signed integer.
pub fn checksum(text: &str) -> i32 {
    let text = without_bom(text);
    let mut crc = Crc32::default();
    let mut rest = text;
    while !rest.is_empty() {
        let end = rest.find(['\r', '\n']).unwrap_or(rest.len());
        crc.update(&rest.as_bytes()[..end]);
        rest = &rest[end..];
        rest = rest
            .strip_prefix("\r\n")
            .or_else(|| rest.strip_prefix('\r'))
            .or_else(|| rest.strip_prefix('\n'))
            .unwrap_or(rest);
    }
    crc.finish() as i32
}

/// CRC-32 (IEEE, as `java.util.zip.CRC32`), bit by bit: the files are small.
struct Crc32(u32);

impl Default for Crc32 {
    fn default() -> Self {
        Crc32(0xffff_ffff)
    }
}

impl Crc32 {
    fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u32::from(b);
            for _ in 0..8 {
                let mask = (self.0 & 1).wrapping_neg();
                self.0 = (self.0 >> 1) ^ (0xedb8_8320 & mask);
            }
        }
    }

    fn finish(&self) -> u32 {
        !self.0
    }
}

/// `executeInTransaction` in a script configuration file (default true).
fn execute_in_transaction(conf: &SourceFile) -> Result<bool, ConfigError> {
    for line in conf.text()?.lines() {
        if let Some((key, value)) = line.split_once('=')
            && key.trim() == "executeInTransaction"
        {
            return Ok(!value.trim().eq_ignore_ascii_case("false"));
        }
    }
    Ok(true)
}

pub(super) fn parse(
    files: &[SourceFile],
    split: &Split,
) -> Result<Vec<SourceMigration>, ConfigError> {
    let mut versioned: BTreeMap<String, (&SourceFile, &str)> = BTreeMap::new();
    let mut undo: BTreeMap<String, &SourceFile> = BTreeMap::new();
    for file in files {
        let Some((prefix, version, description)) = parse_name(file.name()) else {
            continue;
        };
        let slot = match prefix {
            'R' => {
                return Err(ConfigError::new(format!(
                    "flyway: {} is a repeatable migration, which wasmig has no counterpart for; turn it into a versioned one (V<next>__...) or keep running it with Flyway",
                    file.path
                )));
            }
            'V' => versioned
                .insert(version.clone(), (file, description))
                .is_some(),
            _ => undo.insert(version.clone(), file).is_some(),
        };
        if slot {
            return Err(ConfigError::new(format!(
                "flyway: {} is a second migration with version {version}; Flyway refuses that too",
                file.path
            )));
        }
        if file.text()?.contains("${") {
            return Err(ConfigError::new(format!(
                "flyway: {} uses a placeholder (`${{...}}`), which Flyway replaces before running it; write the value into the file (or escape it) first",
                file.path
            )));
        }
    }
    if let Some((version, file)) = undo.iter().find(|(v, _)| !versioned.contains_key(*v)) {
        return Err(ConfigError::new(format!(
            "flyway: {} undoes version {version}, which has no V file",
            file.path
        )));
    }
    let mut migrations = versioned
        .into_iter()
        .map(|(version, (file, description))| {
            let text = file.text()?;
            let down = undo.get(&version);
            // Each script has its own configuration file, or Flyway's look at its statements.
            let no_transaction = |script: &SourceFile, text: &str| {
                let conf_path = format!("{}.conf", script.path);
                match files.iter().find(|f| f.path == conf_path) {
                    Some(conf) => execute_in_transaction(conf).map(|t| !t),
                    None => Ok(split(text)
                        .is_some_and(|s| s.iter().any(|s| flyway_refuses_transaction(s)))),
                }
            };
            let up_no_transaction = no_transaction(file, text)?;
            let down_no_transaction = match down {
                Some(u) => no_transaction(u, u.text()?)?,
                None => false,
            };
            Ok(SourceMigration {
                name: description.replace('_', " "),
                source: file.path.clone(),
                up_file: file.path.clone(),
                down_file: down.map(|u| u.path.clone()),
                up: without_bom(text).to_owned(),
                down: down
                    .map(|u| u.text().map(|t| without_bom(t).to_owned()))
                    .transpose()?,
                up_no_transaction,
                down_no_transaction,
                transaction_cut: false,
                checksum: Some(ToolChecksum::Crc32(checksum(text))),
                version,
            })
        })
        .collect::<Result<Vec<_>, ConfigError>>()?;
    migrations.sort_by(|a, b| compare(&a.version, &b.version));
    if let Some(pair) = migrations
        .windows(2)
        .find(|w| compare(&w[0].version, &w[1].version) == Ordering::Equal)
    {
        return Err(ConfigError::new(format!(
            "flyway: {} and {} have the same version to Flyway ({} = {}); Flyway refuses that too",
            pair[0].source, pair[1].source, pair[0].version, pair[1].version
        )));
    }
    Ok(migrations)
}

/// Replays the table: `SQL` rows apply, `UNDO_SQL` and `DELETE` rows un-apply, a `BASELINE`
/// row makes every migration up to its version count as applied.
pub(super) fn applied(
    migrations: &[SourceMigration],
    rows: &[Row],
) -> Result<Vec<AppliedRow>, AdoptRefused> {
    let mut applied: Vec<AppliedRow> = Vec::new();
    for row in rows {
        let kind = column(TABLE, row, 1, "type")?;
        if kind == "SCHEMA" {
            continue;
        }
        let Ok(version) = column(TABLE, row, 0, "version") else {
            return Err(AdoptRefused::Unreadable {
                table: TABLE,
                what: format!(
                    "a {kind} row has no version (a repeatable migration); wasmig imports versioned migrations only"
                ),
            });
        };
        if !is_true(column(TABLE, row, 3, "success")?) {
            return Err(AdoptRefused::Dirty {
                table: TABLE,
                version: version.to_owned(),
                state: "failed (success = false)",
            });
        }
        match kind {
            "SQL" => {
                let recorded = column(TABLE, row, 2, "checksum")?;
                let checksum = recorded.parse().map_err(|_| AdoptRefused::Unreadable {
                    table: TABLE,
                    what: format!("checksum {recorded:?} of version {version} is not an integer"),
                })?;
                applied.retain(|a| a.version != version);
                applied.push(AppliedRow {
                    version: version.to_owned(),
                    checksum: Some(ToolChecksum::Crc32(checksum)),
                });
            }
            "UNDO_SQL" | "DELETE" => applied.retain(|a| a.version != version),
            "BASELINE" => {
                for m in migrations {
                    if compare(&m.version, version) != Ordering::Greater
                        && !applied.iter().any(|a| a.version == m.version)
                    {
                        applied.push(AppliedRow::version(m.version.clone()));
                    }
                }
            }
            other => {
                return Err(AdoptRefused::Unreadable {
                    table: TABLE,
                    what: format!(
                        "version {version} was applied as {other}, not from a SQL file; wasmig imports SQL migrations only"
                    ),
                });
            }
        }
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{dir, rows};
    use super::super::transaction::tests::split;
    use super::super::{AdoptRefused, Format};
    use super::*;

    #[test]
    fn the_checksum_is_flyways_crc32_of_the_lines() {
        // java.util.zip.CRC32 of "123456789" is 0xCBF43926.
        assert_eq!(checksum("123456789"), 0xcbf4_3926_u32 as i32);
        // Line breaks of any kind are left out, and a trailing one changes nothing.
        assert_eq!(checksum("12345\r\n6789\n"), checksum("123456789"));
        assert_eq!(checksum("\u{feff}12345\r6789"), checksum("123456789"));
    }

    #[test]
    fn versions_order_numerically_with_undo_and_configuration() {
        let files = dir(&[
            ("V1_10__later.sql", "SELECT 110;"),
            ("sub/V1.9__earlier.sql", "SELECT 19;"),
            ("V1__create_t.sql", "CREATE TABLE t (x int);"),
            ("U1__create_t.sql", "DROP TABLE t;"),
            ("U1.9__earlier.sql", "SELECT 91;"),
            ("U1.10__later.sql", "SELECT 1101;"),
            ("U1.10__later.sql.conf", "executeInTransaction=false\n"),
            ("V1.9__earlier.sql.conf", "x=1\n"),
            ("sub/V1.9__earlier.sql.conf", "executeInTransaction=false\n"),
            ("flyway.conf", ""),
        ]);
        let ms = Format::Flyway.parse(&files, &split).unwrap();
        let versions: Vec<_> = ms.iter().map(|m| m.version.as_str()).collect();
        assert_eq!(versions, ["1", "1.9", "1.10"]);
        let same = Format::Flyway
            .parse(&dir(&[("V1__a.sql", ""), ("V1.0__b.sql", "")]), &split)
            .unwrap_err();
        assert!(same.message.contains("same version"), "{same}");
        assert_eq!(ms[0].name, "create t");
        assert_eq!(ms[0].down.as_deref(), Some("DROP TABLE t;"));
        // Each script's own configuration file: V1.9's says false, its undo has none;
        // V1.10 has none, its undo's says false.
        let modes: Vec<_> = ms
            .iter()
            .map(|m| (m.up_no_transaction, m.down_no_transaction))
            .collect();
        assert_eq!(modes, [(false, false), (true, false), (false, true)]);
    }

    #[test]
    fn repeatables_and_placeholders_are_refused() {
        let err = Format::Flyway
            .parse(&dir(&[("R__views.sql", "")]), &split)
            .unwrap_err();
        assert!(
            err.message.contains("R__views.sql") && err.message.contains("repeatable"),
            "{err}"
        );
        let err = Format::Flyway
            .parse(&dir(&[("V1__a.sql", "CREATE SCHEMA ${name};")]), &split)
            .unwrap_err();
        assert!(err.message.contains("placeholder"), "{err}");
    }

    #[test]
    fn the_table_replays_with_baseline_and_undo() {
        let files = dir(&[
            ("V1__a.sql", "SELECT 1;"),
            ("V2__b.sql", "SELECT 2;"),
            ("V3__c.sql", "SELECT 3;"),
            ("V4__d.sql", "SELECT 4;"),
        ]);
        let ms = Format::Flyway.parse(&files, &split).unwrap();
        let sum = |s: &str| checksum(s).to_string();
        let (c3, c4) = (sum("SELECT 3;"), sum("SELECT 4;"));
        let table = rows(&[
            &[Some("2"), Some("BASELINE"), None, Some("true")],
            &[Some("3"), Some("SQL"), Some(&c3), Some("true")],
            &[Some("4"), Some("SQL"), Some(&c4), Some("true")],
            &[Some("4"), Some("UNDO_SQL"), None, Some("true")],
        ]);
        assert_eq!(Format::Flyway.applied(&ms, &table), Ok(3));
        let failed = rows(&[&[Some("1"), Some("SQL"), Some("0"), Some("false")]]);
        assert!(matches!(
            Format::Flyway.applied(&ms, &failed),
            Err(AdoptRefused::Dirty { .. })
        ));
    }
}

//! goose's SQL migrations (`internal/sqlparser`): files directly in the directory named
//! `VERSION_name.sql`, the version a positive integer before the first `_`, in version order.
//! Go migrations (`.go`, not `_test.go`) are compiled into the application: refused, named.
//!
//! goose does not send a file as one script: it splits it into statements line by line
//! (a line whose last word before any `--` ends with `;` ends a statement; between
//! `-- +goose StatementBegin` and `StatementEnd` nothing does), drops comment and blank lines
//! between statements and the annotation lines, and cuts each statement after its last `;`.
//! The imported scripts are those statements, each on its own lines and ended by a `;` line
//! when goose's statement had none, so wasmig runs exactly the statements goose ran.
//! `-- +goose NO TRANSACTION` runs the file outside a transaction; `-- +goose ENVSUB ON`
//! (environment substitution) is refused, as its text depends on the environment.
//! Annotations are read case-insensitively, as goose 3.18+ does. The table:
//! `goose_db_version (id SERIAL, version_id BIGINT, is_applied BOOLEAN, tstamp)`, where a
//! version's last row says whether it is applied (version 0 is goose's own first row).

use std::collections::HashMap;

use super::{AdoptRefused, AppliedRow, Row, SourceFile, SourceMigration, column, is_true};
use crate::error::ConfigError;

/// goose's history table.
pub const TABLE: &str = "goose_db_version";
/// Reads it, newest row first.
pub const QUERY: &str = "SELECT version_id, is_applied FROM goose_db_version ORDER BY id DESC";

/// A goose annotation line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Annotation {
    Up,
    Down,
    Begin,
    End,
    NoTransaction,
    EnvSub,
}

fn annotation(line: &str) -> Option<Annotation> {
    let rest = line.strip_prefix("--")?.trim();
    let rest = rest.strip_prefix("+goose")?;
    let words: String = rest.split_whitespace().collect::<Vec<_>>().join(" ");
    Some(match words.to_ascii_lowercase().as_str() {
        "up" => Annotation::Up,
        "down" => Annotation::Down,
        "statementbegin" => Annotation::Begin,
        "statementend" => Annotation::End,
        "no transaction" => Annotation::NoTransaction,
        "envsub on" | "envsub off" => Annotation::EnvSub,
        _ => return None,
    })
}

/// goose's `endsWithSemicolon`: the last word before a word starting with `--` ends in `;`.
fn ends_with_semicolon(line: &str) -> bool {
    let mut prev = "";
    for word in line.split_whitespace() {
        if word.starts_with("--") {
            break;
        }
        prev = word;
    }
    prev.ends_with(';')
}

/// goose's `cleanupStatement`: cut after the last `;` (if not at the start).
fn cleanup(statement: &str) -> String {
    match statement.rfind(';') {
        Some(n) if n > 0 => statement[..=n].to_owned(),
        _ => statement.to_owned(),
    }
}

/// What goose parses out of one file.
struct Parsed {
    up: Vec<String>,
    down: Vec<String>,
    use_tx: bool,
}

/// goose's state machine, both directions in one pass.
fn parse_file(text: &str) -> Result<Parsed, String> {
    #[derive(PartialEq, Clone, Copy)]
    enum State {
        Start,
        Up,
        BeginUp,
        EndUp,
        Down,
        BeginDown,
        EndDown,
    }
    use State::*;
    let mut state = Start;
    let mut parsed = Parsed {
        up: Vec::new(),
        down: Vec::new(),
        use_tx: true,
    };
    let mut buf = String::new();
    for line in text.lines() {
        if state == Start && line.trim().is_empty() {
            continue;
        }
        let note = if line.starts_with("--") {
            annotation(line)
        } else {
            None
        };
        match note {
            Some(Annotation::Up) => {
                if state != Start {
                    return Err("duplicate `-- +goose Up` annotations".into());
                }
                state = Up;
                continue;
            }
            Some(Annotation::Down) => {
                if !matches!(state, Up | EndUp) {
                    return Err("`-- +goose Down` must follow `-- +goose Up`".into());
                }
                state = Down;
                continue;
            }
            Some(Annotation::Begin) => {
                state = match state {
                    Up | EndUp => BeginUp,
                    Down | EndDown => BeginDown,
                    _ => return Err(
                        "`-- +goose StatementBegin` must follow `-- +goose Up` or `-- +goose Down`"
                            .into(),
                    ),
                };
                continue;
            }
            Some(Annotation::End) => {
                state = match state {
                    BeginUp => EndUp,
                    BeginDown => EndDown,
                    _ => {
                        return Err(
                            "`-- +goose StatementEnd` must follow `-- +goose StatementBegin`"
                                .into(),
                        );
                    }
                };
            }
            Some(Annotation::NoTransaction) => {
                parsed.use_tx = false;
                continue;
            }
            Some(Annotation::EnvSub) => {
                return Err("`-- +goose ENVSUB` substitutes environment variables into the SQL, so what it ran depends on the environment it ran in; write the values into the file and remove the annotation".into());
            }
            None => {}
        }
        if buf.is_empty() && (line.trim_start().starts_with("--") || line.is_empty()) {
            continue;
        }
        if !matches!(state, EndUp | EndDown) {
            buf.push_str(line);
            buf.push('\n');
        }
        let target = match state {
            Up | BeginUp | EndUp => &mut parsed.up,
            Down | BeginDown | EndDown => &mut parsed.down,
            Start => return Err(format!("a statement comes before `-- +goose Up`: {line:?}")),
        };
        let store = match state {
            Up | Down => ends_with_semicolon(line),
            EndUp | EndDown => true,
            _ => false,
        };
        if store {
            target.push(cleanup(&buf));
            buf.clear();
            state = match state {
                EndUp => Up,
                EndDown => Down,
                s => s,
            };
        }
    }
    match state {
        Start => return Err("no `-- +goose Up` annotation".into()),
        BeginUp | BeginDown => return Err("no `-- +goose StatementEnd` annotation".into()),
        _ => {}
    }
    if !buf.trim().is_empty() {
        return Err(format!(
            "unfinished statement {:?}: missing semicolon?",
            buf.trim()
        ));
    }
    Ok(parsed)
}

/// The statements as one script PostgreSQL's parser splits back into the same statements.
fn script(statements: &[String]) -> String {
    let mut out = String::new();
    for s in statements {
        out.push_str(s);
        if !s.ends_with(';') {
            // goose sent it without one (a StatementBegin block ending in a comment or
            // without `;`): end it here, so it does not run together with the next.
            out.push_str("\n;");
        }
        out.push('\n');
    }
    out
}

pub(super) fn parse(files: &[SourceFile]) -> Result<Vec<SourceMigration>, ConfigError> {
    let go: Vec<&str> = files
        .iter()
        .filter(|f| {
            f.is_top_level() && f.name().ends_with(".go") && !f.name().ends_with("_test.go")
        })
        .map(|f| f.path.as_str())
        .collect();
    if !go.is_empty() {
        return Err(ConfigError::new(format!(
            "goose: Go migrations cannot be imported (their code is compiled into the application): {}; rewrite each as SQL or as a wasmig component revision, then import the SQL ones",
            go.join(", ")
        )));
    }
    let mut migrations = Vec::new();
    for file in files
        .iter()
        .filter(|f| f.is_top_level() && f.name().ends_with(".sql"))
    {
        let name = file.name();
        let refuse = |why: String| ConfigError::new(format!("goose: {}: {why}", file.path));
        let Some((digits, rest)) = name.split_once('_') else {
            return Err(refuse(
                "no `_` after the version; goose refuses it too".into(),
            ));
        };
        let version: i64 = digits
            .parse()
            .map_err(|_| refuse("the version before the first `_` is not an integer".into()))?;
        if version < 1 {
            return Err(refuse("goose versions start at 1".into()));
        }
        let parsed = parse_file(file.text()?).map_err(refuse)?;
        migrations.push((
            version,
            SourceMigration {
                version: version.to_string(),
                name: rest.trim_end_matches(".sql").to_owned(),
                source: file.path.clone(),
                up: script(&parsed.up),
                // No statement down: goose runs nothing, said so in `down.sql`.
                down: (!parsed.down.is_empty()).then(|| script(&parsed.down)),
                no_transaction: !parsed.use_tx,
                checksum: None,
            },
        ));
    }
    migrations.sort_by_key(|(v, _)| *v);
    Ok(migrations.into_iter().map(|(_, m)| m).collect())
}

/// A version's newest row decides; version 0 is goose's own.
pub(super) fn applied(rows: &[Row]) -> Result<Vec<AppliedRow>, AdoptRefused> {
    let mut seen = HashMap::new();
    let mut applied = Vec::new();
    for row in rows {
        let version = column(TABLE, row, 0, "version_id")?;
        let is_applied = is_true(column(TABLE, row, 1, "is_applied")?);
        if version == "0" || seen.insert(version, is_applied).is_some() {
            continue;
        }
        if is_applied {
            applied.push(AppliedRow::version(version.to_owned()));
        }
    }
    applied.reverse();
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::super::Format;
    use super::super::tests::{dir, rows};
    use super::*;

    const FILE: &str = "-- +goose Up
-- a comment goose drops
CREATE TABLE t (x int); -- trailing
INSERT INTO t
VALUES (1);

-- +goose StatementBegin
CREATE FUNCTION f() RETURNS int AS $$
BEGIN
  RETURN 1;
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION f();
DROP TABLE t;
";

    #[test]
    fn statements_are_those_goose_sends() {
        let parsed = parse_file(FILE).unwrap();
        assert_eq!(
            parsed.up,
            [
                "CREATE TABLE t (x int);",
                "INSERT INTO t\nVALUES (1);",
                "CREATE FUNCTION f() RETURNS int AS $$\nBEGIN\n  RETURN 1;\nEND;\n$$ LANGUAGE plpgsql;",
            ]
        );
        assert_eq!(parsed.down, ["DROP FUNCTION f();", "DROP TABLE t;"]);
        assert!(parsed.use_tx);
    }

    #[test]
    fn a_block_without_a_semicolon_is_ended_in_the_script() {
        let parsed = parse_file(
            "-- +goose up\n-- +goose statementbegin\nSELECT 1\n-- +goose statementend\nSELECT 2;\n",
        )
        .unwrap();
        assert_eq!(parsed.up, ["SELECT 1\n", "SELECT 2;"]);
        assert_eq!(script(&parsed.up), "SELECT 1\n\n;\nSELECT 2;\n");
    }

    #[test]
    fn files_are_ordered_by_version_and_go_ones_refused() {
        let files = dir(&[
            (
                "00010_b.sql",
                "-- +goose Up\n-- +goose NO TRANSACTION\nSELECT 10;\n",
            ),
            ("00002_a.sql", FILE),
        ]);
        let ms = Format::Goose.parse(&files).unwrap();
        assert_eq!(ms[0].version, "2");
        assert_eq!(ms[1].version, "10");
        assert_eq!(ms[1].down, None, "no Down section");
        assert!(ms[1].no_transaction && !ms[0].no_transaction);
        let mut with_go = files.clone();
        with_go.extend(dir(&[("00003_c.go", "package m"), ("x_test.go", "")]));
        let err = Format::Goose.parse(&with_go).unwrap_err();
        assert!(
            err.message.contains("00003_c.go") && !err.message.contains("x_test"),
            "{err}"
        );
        let err = Format::Goose
            .parse(&dir(&[(
                "1_e.sql",
                "-- +goose Up\n-- +goose ENVSUB ON\nSELECT '${X}';\n",
            )]))
            .unwrap_err();
        assert!(err.message.contains("ENVSUB"), "{err}");
        let err = Format::Goose
            .parse(&dir(&[("1_u.sql", "-- +goose Up\nSELECT 1\n")]))
            .unwrap_err();
        assert!(err.message.contains("missing semicolon"), "{err}");
    }

    #[test]
    fn a_versions_newest_row_decides() {
        let files = dir(&[
            ("1_a.sql", "-- +goose Up\n"),
            ("2_b.sql", "-- +goose Up\n"),
            ("3_c.sql", "-- +goose Up\n"),
        ]);
        let ms = Format::Goose.parse(&files).unwrap();
        // Newest first: 3 was applied then rolled back.
        let table = rows(&[
            &[Some("3"), Some("false")],
            &[Some("3"), Some("true")],
            &[Some("2"), Some("true")],
            &[Some("1"), Some("true")],
            &[Some("0"), Some("true")],
        ]);
        assert_eq!(Format::Goose.applied(&ms, &table), Ok(2));
    }
}

//! goose's SQL migrations (`internal/sqlparser`): files directly in the directory named
//! `VERSION_name.sql`, the version a positive integer before the first `_`, in version order.
//! Go migrations (`.go`, not `_test.go`) are compiled into the application: refused, named.
//!
//! goose does not send a file as one script: it splits it into statements line by line
//! (a line whose last word before any `--` ends with `;` ends a statement; between
//! `-- +goose StatementBegin` and `StatementEnd` nothing does), drops comment and blank lines
//! between statements and the annotation lines, and trims each statement's whitespace (goose
//! 3.15+). The imported scripts are those statements, each on its own lines and ended by a
//! `;` line when goose's statement had none, so wasmig runs exactly the statements goose ran.
//! `-- +goose NO TRANSACTION` runs the file outside a transaction; `-- +goose ENVSUB ON`
//! (environment substitution) is refused, as its text depends on the environment.
//! Annotations are read as goose 3.18+ reads them (`extractAnnotation`): any line starting
//! with `--` that holds `+goose`, case-insensitively; an unknown one, an indented one and a
//! statement left without its `;` are refused, as goose refuses them, naming the line. The
//! table:
//! `goose_db_version (id SERIAL, version_id BIGINT, is_applied BOOLEAN, tstamp)`, where a
//! version's last row says whether it is applied (version 0 is goose's own first row).

use std::collections::HashMap;

use super::transaction::{Split, is_terminated, shown};
use super::{AdoptRefused, AppliedRow, Reads, Row, SourceFile, SourceMigration, column, is_true};
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
    EnvSubOn,
    EnvSubOff,
}

/// goose's `extractAnnotation`, for a line it takes as one: a line starting with `--` (past
/// whitespace) that holds `+goose` anywhere. Every `--` is dropped, then the first
/// `+goose`, and what is left must be one of goose's annotations (case-insensitively).
fn annotation(line: &str) -> Result<Annotation, String> {
    if line.starts_with([' ', '\t']) {
        return Err(format!(
            "`{line}` has leading whitespace, and goose refuses an annotation that does not start the line (\"invalid annotation\"): remove the indentation"
        ));
    }
    let command = line.replace("--", "").replacen("+goose", "", 1);
    if command.contains("+goose") {
        return Err(format!(
            "`{line}` holds `+goose` twice, and goose refuses that (\"invalid annotation\"): one annotation a line"
        ));
    }
    let command = command.trim();
    const KNOWN: [(&str, Annotation); 7] = [
        ("Up", Annotation::Up),
        ("Down", Annotation::Down),
        ("StatementBegin", Annotation::Begin),
        ("StatementEnd", Annotation::End),
        ("NO TRANSACTION", Annotation::NoTransaction),
        ("ENVSUB ON", Annotation::EnvSubOn),
        ("ENVSUB OFF", Annotation::EnvSubOff),
    ];
    KNOWN
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(command))
        .map(|(_, a)| *a)
        .ok_or_else(|| {
            format!(
                "unknown annotation `{command}` in `{line}`, which goose refuses too; goose knows `-- +goose` Up, Down, StatementBegin, StatementEnd, NO TRANSACTION and ENVSUB ON/OFF (a comment that mentions `+goose` is read as an annotation: reword it)"
            )
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

/// goose's `cleanupStatement` (since 3.15): the statement without surrounding whitespace.
fn cleanup(statement: &str) -> String {
    statement.trim().to_owned()
}

/// What goose parses out of one file.
#[derive(Debug)]
struct Parsed {
    up: Vec<String>,
    down: Vec<String>,
    use_tx: bool,
}

/// goose's state machine, both directions in one pass. Errors name the line (from 1).
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
    // The line the statement in `buf` began on.
    let mut began = 0;
    let unfinished = |buf: &str, began: usize| {
        format!(
            "the statement from line {began} (`{}`) is not finished: goose ends a statement at a line ending in `;` (outside `-- +goose StatementBegin` ... `StatementEnd`) and refuses this one too (\"unexpected unfinished SQL query: missing semicolon?\"); end it with `;`",
            buf.trim().lines().next().unwrap_or("")
        )
    };
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        if state == Start && line.trim().is_empty() {
            continue;
        }
        let note = if line.trim().starts_with("--") && line.contains("+goose") {
            Some(annotation(line).map_err(|why| format!("line {n}: {why}"))?)
        } else {
            None
        };
        match note {
            Some(Annotation::Up) => {
                if state != Start {
                    return Err(format!("line {n}: a second `-- +goose Up` annotation"));
                }
                state = Up;
                continue;
            }
            Some(Annotation::Down) => {
                if !matches!(state, Up | EndUp) {
                    return Err(format!(
                        "line {n}: `-- +goose Down` must follow `-- +goose Up` (and not be inside a StatementBegin block)"
                    ));
                }
                if !buf.trim().is_empty() {
                    return Err(format!(
                        "line {n}: `-- +goose Down` ends the up section, but {}",
                        unfinished(&buf, began)
                    ));
                }
                state = Down;
                continue;
            }
            Some(Annotation::Begin) => {
                state = match state {
                    Up | EndUp => BeginUp,
                    Down | EndDown => BeginDown,
                    _ => {
                        return Err(format!(
                            "line {n}: `-- +goose StatementBegin` must follow `-- +goose Up` or `-- +goose Down` (or a StatementEnd)"
                        ));
                    }
                };
                continue;
            }
            Some(Annotation::End) => {
                state = match state {
                    BeginUp => EndUp,
                    BeginDown => EndDown,
                    _ => {
                        return Err(format!(
                            "line {n}: `-- +goose StatementEnd` must follow `-- +goose StatementBegin`"
                        ));
                    }
                };
            }
            Some(Annotation::NoTransaction) => {
                parsed.use_tx = false;
                continue;
            }
            Some(Annotation::EnvSubOn) => {
                return Err(format!(
                    "line {n}: `-- +goose ENVSUB ON` substitutes environment variables into the SQL, so what it ran depends on the environment it ran in; write the values into the file and remove the annotation"
                ));
            }
            // Substitution off, as it is without the annotation.
            Some(Annotation::EnvSubOff) => continue,
            None => {}
        }
        if buf.is_empty() && (line.trim_start().starts_with("--") || line.is_empty()) {
            continue;
        }
        if !matches!(state, EndUp | EndDown) {
            if buf.is_empty() {
                began = n;
            }
            buf.push_str(line);
            buf.push('\n');
        }
        let target = match state {
            Up | BeginUp | EndUp => &mut parsed.up,
            Down | BeginDown | EndDown => &mut parsed.down,
            Start => {
                return Err(format!(
                    "line {n}: a statement comes before `-- +goose Up`: {line:?}"
                ));
            }
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
            "at the end of the file, {}",
            unfinished(&buf, began)
        ));
    }
    Ok(parsed)
}

/// The statements as one script PostgreSQL's parser splits back into the same statements.
fn script(statements: &[String]) -> String {
    let mut out = String::new();
    for s in statements {
        out.push_str(s);
        if !is_terminated(s) {
            // goose sent it without one (a StatementBegin block ending in a comment or
            // without `;`): end it here, so it does not run together with the next.
            out.push_str("\n;");
        }
        out.push('\n');
    }
    out
}

/// Whether goose takes a file directly in the directory for a Go migration.
fn is_go(name: &str) -> bool {
    name.ends_with(".go") && !name.ends_with("_test.go")
}

pub(super) fn reads(path: &str) -> Reads {
    match path {
        _ if path.contains('/') => Reads::Nothing,
        _ if path.ends_with(".sql") => Reads::Contents,
        _ if is_go(path) => Reads::Name,
        _ => Reads::Nothing,
    }
}

pub(super) fn parse(
    files: &[SourceFile],
    split: &Split,
) -> Result<Vec<SourceMigration>, ConfigError> {
    let go: Vec<&str> = files
        .iter()
        .filter(|f| f.is_top_level() && is_go(f.name()))
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
        // goose sends each piece alone: one PostgreSQL cannot read alone (goose ended it at
        // a line ending in `;` inside a string or a body) failed under goose, and joined
        // with the next in `up.sql` it would run as something goose never sent.
        for (direction, pieces) in [("up", &parsed.up), ("down", &parsed.down)] {
            if let Some(piece) = pieces.iter().find(|p| split(p).is_none()) {
                return Err(refuse(format!(
                    "goose sends the {direction} statement `{}` on its own, and PostgreSQL cannot read it on its own: goose ends a statement at any line ending in `;`, also inside a string or a function body; wrap the statement in `-- +goose StatementBegin` ... `-- +goose StatementEnd`, then import again",
                    shown(piece)
                )));
            }
        }
        migrations.push((
            version,
            SourceMigration {
                version: version.to_string(),
                name: rest.trim_end_matches(".sql").to_owned(),
                source: file.path.clone(),
                up_file: file.path.clone(),
                down_file: Some(file.path.clone()),
                up: script(&parsed.up),
                // No statement down: goose runs nothing, said so in `down.sql`.
                down: (!parsed.down.is_empty()).then(|| script(&parsed.down)),
                // goose's `NO TRANSACTION` holds for the whole file.
                up_no_transaction: !parsed.use_tx,
                down_no_transaction: !parsed.use_tx,
                transaction_cut: false,
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
    use super::super::transaction::tests::split;
    use super::*;

    const FILE: &str = "-- +goose Up
-- a comment goose drops
CREATE TABLE t (x int); -- trailing, kept
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
                "CREATE TABLE t (x int); -- trailing, kept",
                "INSERT INTO t\nVALUES (1);",
                "CREATE FUNCTION f() RETURNS int AS $$\nBEGIN\n  RETURN 1;\nEND;\n$$ LANGUAGE plpgsql;",
            ]
        );
        assert_eq!(parsed.down, ["DROP FUNCTION f();", "DROP TABLE t;"]);
        assert!(parsed.use_tx);
        // Ended by its `;`, the comment after it aside: no `;` added.
        assert!(
            script(&parsed.up).starts_with("CREATE TABLE t (x int); -- trailing, kept\nINSERT")
        );
    }

    #[test]
    fn a_block_without_a_semicolon_is_ended_in_the_script() {
        let parsed = parse_file(
            "-- +goose up\n-- +goose statementbegin\nSELECT 1\n-- +goose statementend\nSELECT 2;\n",
        )
        .unwrap();
        assert_eq!(parsed.up, ["SELECT 1", "SELECT 2;"]);
        assert_eq!(script(&parsed.up), "SELECT 1\n;\nSELECT 2;\n");
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
        let ms = Format::Goose.parse(&files, &split).unwrap();
        assert_eq!(ms[0].version, "2");
        assert_eq!(ms[1].version, "10");
        assert_eq!(ms[1].down, None, "no Down section");
        assert!(ms[1].up_no_transaction && !ms[0].up_no_transaction);
        let mut with_go = files.clone();
        with_go.extend(dir(&[("00003_c.go", "package m"), ("x_test.go", "")]));
        let err = Format::Goose.parse(&with_go, &split).unwrap_err();
        assert!(
            err.message.contains("00003_c.go") && !err.message.contains("x_test"),
            "{err}"
        );
        let err = Format::Goose
            .parse(
                &dir(&[(
                    "1_e.sql",
                    "-- +goose Up\n-- +goose ENVSUB ON\nSELECT '${X}';\n",
                )]),
                &split,
            )
            .unwrap_err();
        assert!(err.message.contains("ENVSUB"), "{err}");
        let err = Format::Goose
            .parse(&dir(&[("1_u.sql", "-- +goose Up\nSELECT 1\n")]), &split)
            .unwrap_err();
        assert!(err.message.contains("missing semicolon"), "{err}");
    }

    #[test]
    fn an_up_section_ending_without_a_semicolon_is_refused_at_its_line() {
        let err = parse_file(
            "-- +goose Up\nCREATE TABLE t (x int);\nCREATE TABLE u (x int)\n\n-- +goose Down\nDROP TABLE u;\n",
        )
        .unwrap_err();
        assert!(
            err.contains("line 3") && err.contains("line 5") && err.contains("missing semicolon"),
            "{err}"
        );
    }

    #[test]
    fn unknown_and_indented_annotations_are_refused_as_goose_refuses_them() {
        let err = parse_file("-- +goose NO TRANSACTIONS\n-- +goose Up\nSELECT 1;\n").unwrap_err();
        assert!(
            err.contains("line 1") && err.contains("unknown annotation `NO TRANSACTIONS`"),
            "{err}"
        );
        let err = parse_file("-- +goose Up\n-- +goose  NO   transaction\nSELECT 1;\n").unwrap_err();
        assert!(
            err.contains("line 2") && err.contains("unknown annotation"),
            "{err}"
        );
        let err = parse_file(
            "-- +goose Up\n-- +goose StatementBegin\nSELECT 1;\n  -- +goose StatementEnd\n-- +goose Down\n",
        )
        .unwrap_err();
        assert!(
            err.contains("line 4") && err.contains("leading whitespace"),
            "{err}"
        );
        // A comment that mentions `+goose` is an annotation to goose too.
        let err = parse_file("-- +goose Up\n-- see the +goose docs\nSELECT 1;\n").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
        // The file names it.
        let err = Format::Goose
            .parse(&dir(&[("1_t.sql", "-- +goose up\n--+goose statementBegin\nSELECT 1;\n-- +goose Envsub Off\n-- +goose StatementEnd\n-- +goose NO TRANSACTIONS\n")]), &split)
            .unwrap_err();
        assert!(err.message.starts_with("goose: 1_t.sql: line 6"), "{err}");
    }

    #[test]
    fn a_versions_newest_row_decides() {
        let files = dir(&[
            ("1_a.sql", "-- +goose Up\n"),
            ("2_b.sql", "-- +goose Up\n"),
            ("3_c.sql", "-- +goose Up\n"),
        ]);
        let ms = Format::Goose.parse(&files, &split).unwrap();
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

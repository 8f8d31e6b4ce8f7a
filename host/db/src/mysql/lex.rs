//! Reading MySQL and MariaDB SQL as the server will: splitting a script into statements,
//! the statements that end or bypass wasmig's transaction, and the statements that commit
//! implicitly (DDL and the like), which make a revision non-atomic on these servers.
//!
//! There is no parser of the server's own to call, so the check is lexical, and made
//! under both readings of a backslash in a string (the default, where it escapes the next
//! character, and `NO_BACKSLASH_ESCAPES`, which a migration may set): a script whose
//! statements differ between the two readings is refused rather than guessed at, and a
//! statement is judged by what either reading finds in it. Executable comments
//! (`/*! … */`, `/*!50001 … */`, MariaDB's `/*M! … */`) are read as the code they are.
//! What the lexer does not see, the server still does not get to hide: each statement is
//! sent on its own through the prepared-statement protocol, which refuses a text holding
//! two statements, and the session checks its transaction on the server
//! (`@@in_transaction`, and a savepoint only wasmig knows the name of).
//!
//! Not here: running statements (`session`), PostgreSQL and SQLite (`tx_control`).

#![allow(clippy::result_large_err)]

use wasmig_contract::SqlError;

/// One statement of a script, as one reading saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Statement<'a> {
    /// Its text, without the terminating `;`.
    pub(crate) text: &'a str,
    /// Its first words, upper-cased (at most [`LEAD_WORDS`]), up to the first token that is
    /// not a word.
    pub(crate) lead: Vec<String>,
    /// A `SET` naming `autocommit` or `completion_type`, which decide when the server
    /// commits.
    pub(crate) sets_commit: bool,
}

/// How many leading words are kept: enough for `CREATE OR REPLACE TEMPORARY TABLE`.
const LEAD_WORDS: usize = 5;

/// Ends a statement: kept when it has content.
fn push<'a>(
    out: &mut Vec<Statement<'a>>,
    text: &'a str,
    lead: &mut Vec<String>,
    content: bool,
    sets_commit: bool,
) {
    if content {
        // Any spelling of the name (`autocommit`, `` `autocommit` ``, in a comment…).
        let lower = text.to_ascii_lowercase();
        let sets_commit = sets_commit
            || (lead.first().is_some_and(|w| w == "SET")
                && (lower.contains("autocommit") || lower.contains("completion_type")));
        out.push(Statement {
            text,
            lead: std::mem::take(lead),
            sets_commit,
        });
    } else {
        lead.clear();
    }
}

/// One way the server may read a script: whether a backslash escapes in a string (not
/// under `NO_BACKSLASH_ESCAPES`), and whether a versioned executable comment
/// (`/*!50700 … */`, `/*M!100100 … */`) is code (the server is at least that version) or a
/// comment (it is older, or `/*M!` on MySQL).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reading {
    backslash: bool,
    versioned: bool,
}

/// Every reading a script is judged under.
pub(crate) const READINGS: [Reading; 4] = [
    Reading {
        backslash: true,
        versioned: true,
    },
    Reading {
        backslash: false,
        versioned: true,
    },
    Reading {
        backslash: true,
        versioned: false,
    },
    Reading {
        backslash: false,
        versioned: false,
    },
];

/// Splits `script` at `;` outside strings, quoted names, comments and the bodies of stored
/// programs, with a backslash escaping in strings or not (`NO_BACKSLASH_ESCAPES`). Empty
/// statements (whitespace and comments only) are left out.
pub(crate) fn split(script: &str, reading: Reading) -> Vec<Statement<'_>> {
    let Reading {
        backslash,
        versioned,
    } = reading;
    let b = script.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let mut lead: Vec<String> = Vec::new();
    let mut leading = true;
    // Whether the statement has a token other than comments (an empty one is left out).
    let mut content = false;
    let mut sets_commit = false;
    // Inside `/*! … */`: the closing `*/` is skipped, the rest read as code.
    let mut executable = false;
    // A stored program (`CREATE … PROCEDURE|FUNCTION|TRIGGER|EVENT`, or MariaDB's
    // `BEGIN NOT ATOMIC`): `;` inside its BEGIN … END does not end the statement.
    let mut routine = false;
    let mut depth = 0usize;
    // The previous word was END: the next word (IF, LOOP, CASE…) closes that block.
    let mut after_end = false;
    while i < b.len() {
        let c = b[i];
        let comment = c.is_ascii_whitespace()
            || c == b'#'
            // `--` starts a comment when followed by a space or a control character.
            || (c == b'-'
                && b.get(i + 1) == Some(&b'-')
                && b.get(i + 2).is_none_or(|&c| c <= b' ' || c == 0x7f))
            || (c == b'/' && b.get(i + 1) == Some(&b'*'))
            || (c == b'*' && executable && b.get(i + 1) == Some(&b'/'));
        // An END waits for the next token to know what it closed: `END IF`, `END LOOP`…
        // close blocks that opened no level; `END CASE`, `END label`, `END;` close one.
        if after_end && !comment && !is_word_start(c) {
            after_end = false;
            depth -= 1;
        }
        match c {
            b';' if depth == 0 => {
                push(&mut out, &script[start..i], &mut lead, content, sets_commit);
                leading = true;
                content = false;
                sets_commit = false;
                routine = false;
                i += 1;
                start = i;
            }
            _ if c.is_ascii_whitespace() => i += 1,
            b'#' => i = memchr(b, i, b'\n').map_or(b.len(), |n| n + 1),
            b'-' if comment => i = memchr(b, i, b'\n').map_or(b.len(), |n| n + 1),
            b'/' if comment => {
                let marker = match (b.get(i + 2), b.get(i + 3)) {
                    (Some(b'!'), _) => Some(3),
                    (Some(b'M'), Some(b'!')) => Some(4),
                    _ => None,
                };
                // A version number (or MariaDB's `M!`) makes it code on some servers only.
                let version = marker
                    .is_some_and(|len| len == 4 || b.get(i + len).is_some_and(u8::is_ascii_digit));
                match marker {
                    Some(len) if !executable && (versioned || !version) => {
                        executable = true;
                        i += len;
                        while i < b.len() && b[i].is_ascii_digit() {
                            i += 1;
                        }
                    }
                    _ => i = find(b, i + 2, b"*/").map_or(b.len(), |n| n + 2),
                }
            }
            b'*' if comment => {
                executable = false;
                i += 2;
            }
            b'\'' | b'"' => {
                content = true;
                leading = false;
                i = skip_quoted(b, i, c, backslash);
            }
            b'`' => {
                content = true;
                leading = false;
                i = skip_quoted(b, i, b'`', false);
            }
            _ if is_word_start(c) => {
                content = true;
                let begin = i;
                while i < b.len() && is_word_char(b[i]) {
                    i += 1;
                }
                let upper = script[begin..i].to_ascii_uppercase();
                if leading && lead.len() < LEAD_WORDS {
                    lead.push(upper.clone());
                }
                let first = lead.first().map(String::as_str);
                if first == Some("SET")
                    && matches!(upper.as_str(), "AUTOCOMMIT" | "COMPLETION_TYPE")
                {
                    sets_commit = true;
                }
                if first == Some("CREATE")
                    && matches!(
                        upper.as_str(),
                        "PROCEDURE" | "FUNCTION" | "TRIGGER" | "EVENT"
                    )
                {
                    routine = true;
                }
                if first == Some("BEGIN") && lead.len() == 2 && upper == "NOT" {
                    routine = true;
                    depth += 1;
                }
                if after_end {
                    after_end = false;
                    match upper.as_str() {
                        "IF" | "LOOP" | "WHILE" | "REPEAT" | "FOR" => continue,
                        "CASE" => {
                            depth -= 1;
                            continue;
                        }
                        _ => depth -= 1,
                    }
                }
                if routine {
                    match upper.as_str() {
                        "BEGIN" => depth += 1,
                        "CASE" if depth > 0 => depth += 1,
                        "END" if depth > 0 => after_end = true,
                        _ => {}
                    }
                }
            }
            _ if c.is_ascii_digit() => {
                content = true;
                leading = false;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.')
                {
                    i += 1;
                }
            }
            _ => {
                content = true;
                leading = false;
                i += 1;
            }
        }
    }
    if start < b.len() {
        push(&mut out, &script[start..], &mut lead, content, sets_commit);
    }
    out
}

/// The statements of `script` in order, as both readings of a backslash split it.
///
/// # Errors
/// `WASMIG-STATE` when the two readings split it differently: a string with a backslash
/// before a quote, which the server reads one way or the other by its `sql_mode`.
pub(crate) fn statements(script: &str) -> Result<Vec<Statement<'_>>, SqlError> {
    let first = split(script, READINGS[0]);
    for reading in &READINGS[1..] {
        if !first
            .iter()
            .map(|s| s.text)
            .eq(split(script, *reading).iter().map(|s| s.text))
        {
            return Err(SqlError::wasmig(
                "STATE",
                "the script splits into different statements depending on how the server reads it (whether a backslash escapes a quote, MySQL's NO_BACKSLASH_ESCAPES; whether a versioned comment /*!NNNNN … */ or /*M! … */ is code on this server), so wasmig cannot tell what the server will run; write a quote doubled ('it''s') instead of escaped, and keep statement ends out of versioned comments",
            ));
        }
    }
    Ok(first)
}

/// The transaction-control statement `s` is, if any (as written).
pub(crate) fn control(s: &Statement<'_>) -> Option<&'static str> {
    let word = |i: usize| s.lead.get(i).map_or("", String::as_str);
    Some(match (word(0), word(1)) {
        // MariaDB's anonymous block `BEGIN NOT ATOMIC … END` is code, not a transaction.
        ("BEGIN", "NOT") => return None,
        ("BEGIN", _) => "BEGIN",
        ("START", "TRANSACTION") => "START TRANSACTION",
        ("COMMIT", _) => "COMMIT",
        ("ROLLBACK", _) => "ROLLBACK",
        ("SAVEPOINT", _) => "SAVEPOINT",
        ("RELEASE", _) => "RELEASE SAVEPOINT",
        ("XA", _) => "XA",
        ("LOCK", _) => "LOCK TABLES",
        ("UNLOCK", _) => "UNLOCK TABLES",
        ("SET", _) if s.sets_commit => "SET autocommit",
        // MariaDB's `SET STATEMENT … FOR stmt` runs any statement: refused as a whole.
        ("SET", "STATEMENT") => "SET STATEMENT … FOR",
        ("DELIMITER", _) => "DELIMITER",
        _ => return None,
    })
}

/// Whether `s` is a data statement, which runs inside a transaction without committing it:
/// reads, writes of rows, session settings, temporary tables. Everything else (DDL,
/// account and privilege changes, table maintenance, `CALL` of a procedure that may do
/// any of those) is taken to commit implicitly.
pub(crate) fn is_data(s: &Statement<'_>) -> bool {
    let word = |i: usize| s.lead.get(i).map_or("", String::as_str);
    match word(0) {
        "SELECT" | "INSERT" | "UPDATE" | "DELETE" | "REPLACE" | "WITH" | "VALUES" | "TABLE"
        | "DO" | "HANDLER" | "SHOW" | "DESCRIBE" | "DESC" | "EXPLAIN" => true,
        // Not the server's own settings, which outlive a rollback.
        "SET" => {
            let lower = s.text.to_ascii_lowercase();
            !s.sets_commit
                && !matches!(
                    word(1),
                    "PASSWORD"
                        | "ROLE"
                        | "DEFAULT"
                        | "GLOBAL"
                        | "PERSIST"
                        | "PERSIST_ONLY"
                        | "STATEMENT"
                )
                && !lower.contains("@@global")
                && !lower.contains("@@persist")
        }
        "CREATE" => {
            (word(1) == "TEMPORARY" && word(2) == "TABLE")
                || (word(1) == "OR" && word(3) == "TEMPORARY" && word(4) == "TABLE")
        }
        "DROP" => word(1) == "TEMPORARY" && word(2) == "TABLE",
        _ => false,
    }
}

/// Whether every statement of `script` is a data statement ([`is_data`]), under both
/// readings; a script that cannot be read is not.
pub(crate) fn only_data(script: &str) -> bool {
    statements(script).is_ok()
        && READINGS
            .iter()
            .all(|r| split(script, *r).iter().all(is_data))
}

/// The first statement of `sql` (under either reading) that is transaction control, with
/// its number from 0.
pub(crate) fn first_control(sql: &str) -> Option<(usize, &'static str)> {
    READINGS.into_iter().find_map(|reading| {
        split(sql, reading)
            .iter()
            .enumerate()
            .find_map(|(n, s)| control(s).map(|k| (n, k)))
    })
}

/// The first statement of `sql` (under either reading) that commits implicitly, with its
/// first words.
pub(crate) fn first_implicit_commit(sql: &str) -> Option<(usize, String)> {
    READINGS.into_iter().find_map(|reading| {
        split(sql, reading)
            .iter()
            .enumerate()
            .find(|(_, s)| !is_data(s) && control(s).is_none())
            .map(|(n, s)| {
                (
                    n,
                    s.lead.iter().take(2).cloned().collect::<Vec<_>>().join(" "),
                )
            })
    })
}

fn is_word_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b'$' || b >= 0x80
}

fn is_word_char(b: u8) -> bool {
    is_word_start(b) || b.is_ascii_digit()
}

fn memchr(b: &[u8], from: usize, needle: u8) -> Option<usize> {
    b[from..]
        .iter()
        .position(|&x| x == needle)
        .map(|n| from + n)
}

fn find(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    b.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|n| from + n)
}

/// Skips a string or quoted name opened at `open`: a doubled quote is part of it, and with
/// `backslash` a backslash escapes the next byte.
fn skip_quoted(b: &[u8], open: usize, close: u8, backslash: bool) -> usize {
    let mut i = open + 1;
    while i < b.len() {
        if backslash && b[i] == b'\\' {
            i += 2;
        } else if b[i] == close {
            if b.get(i + 1) == Some(&close) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(script: &str) -> Vec<&str> {
        statements(script)
            .unwrap()
            .into_iter()
            .map(|s| s.text.trim())
            .collect()
    }

    #[test]
    fn splits_outside_strings_names_and_comments() {
        assert_eq!(
            texts("SELECT 'a;b', `c;d`, \"e;f\"; -- x;y\n# z;w\nSELECT /* ; */ 1;;"),
            vec![
                "SELECT 'a;b', `c;d`, \"e;f\"",
                "-- x;y\n# z;w\nSELECT /* ; */ 1"
            ]
        );
        // `--` without a space is two minus signs, not a comment.
        assert_eq!(
            texts("SELECT 1--1; SELECT 2"),
            vec!["SELECT 1--1", "SELECT 2"]
        );
    }

    #[test]
    fn stored_programs_keep_their_bodies_whole() {
        let script = "CREATE DEFINER = `a`@`%` PROCEDURE p() BEGIN
              IF 1 THEN SELECT 1; ELSE SELECT 2; END IF;
              FOR i IN 1..2 DO SELECT i; END FOR;
              WHILE 0 DO SELECT 3; END WHILE;
              SELECT CASE WHEN 1 THEN 2 END;
              CASE 1 WHEN 1 THEN SELECT 4; END CASE;
              BEGIN SELECT 5; END;
            END;
            CREATE TRIGGER t BEFORE INSERT ON x FOR EACH ROW BEGIN SET NEW.a = 1; END;
            BEGIN NOT ATOMIC SELECT 1; SELECT 2; END;
            SELECT 9";
        let split = texts(script);
        assert_eq!(split.len(), 4, "{split:#?}");
        assert!(split[0].ends_with("END"));
        assert!(split[2].starts_with("BEGIN NOT ATOMIC"));
        assert_eq!(split[3], "SELECT 9");
    }

    #[test]
    fn transaction_control_is_found_in_any_disguise() {
        for sql in [
            "COMMIT",
            "commit work",
            "BEGIN",
            "START TRANSACTION READ ONLY",
            "ROLLBACK TO SAVEPOINT x",
            "SAVEPOINT x",
            "RELEASE SAVEPOINT x",
            "XA START 'x'",
            "LOCK TABLES t WRITE",
            "UNLOCK TABLES",
            "SET autocommit = 1",
            "SET @@session.autocommit = 1",
            "SET SESSION completion_type = 'CHAIN'",
            "/*!40000 COMMIT */",
            "/*M!100000 COMMIT */",
            "SELECT 1; /* c */ COMMIT",
            "DELIMITER //",
            "SET `autocommit`=0, `autocommit`=1",
            "SET @a = 1 --\x01 '\n, autocommit = 0, @b = ' '",
            "/*!80000 SELECT */ COMMIT",
            "/*M!999999 SELECT */ COMMIT AND CHAIN",
            "SET STATEMENT max_statement_time=0 FOR COMMIT",
        ] {
            assert!(first_control(sql).is_some(), "{sql}");
        }
        for sql in [
            "SELECT 'COMMIT'",
            "SELECT `commit` FROM t",
            "/* COMMIT */ SELECT 1",
            "BEGIN NOT ATOMIC SELECT 1; END",
        ] {
            assert_eq!(first_control(sql), None, "{sql}");
        }
        // The other reading of a backslash: with NO_BACKSLASH_ESCAPES the string ends
        // at the backslash, and COMMIT is a statement.
        assert!(first_control("SELECT '\\'; COMMIT; SELECT '").is_some());
        assert!(statements("SELECT '\\'; COMMIT; SELECT '").is_err());
    }

    #[test]
    fn data_statements_are_told_from_implicit_commits() {
        assert!(only_data(
            "INSERT INTO t VALUES (1); UPDATE t SET a = 2; SET @x = 1;
             CREATE TEMPORARY TABLE tmp (a INT); DROP TEMPORARY TABLE tmp; SELECT 1"
        ));
        for ddl in [
            "CREATE TABLE t (a INT)",
            "ALTER TABLE t ADD b INT",
            "CREATE INDEX i ON t (a)",
            "DROP TABLE t",
            "RENAME TABLE a TO b",
            "TRUNCATE t",
            "GRANT SELECT ON t TO u",
            "CALL p()",
            "ANALYZE TABLE t",
            "/*!50001 CREATE VIEW v AS SELECT 1 */",
            "SET PASSWORD = 'x'",
            "/*!80000 SELECT 1, */ CREATE TABLE x (a int)",
            "CREATE TEMPORARY SEQUENCE s",
            "SET GLOBAL max_allowed_packet = 1073741824",
            "SET @@global.max_allowed_packet = 1073741824",
        ] {
            assert!(!only_data(ddl), "{ddl}");
            assert!(first_implicit_commit(ddl).is_some(), "{ddl}");
        }
        assert_eq!(
            first_implicit_commit("SELECT 1; CREATE TABLE t (a INT)")
                .unwrap()
                .0,
            1
        );
    }
}

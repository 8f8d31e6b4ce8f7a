//! Transaction control in a migration's SQL: splitting a script into statements, and
//! refusing the statements that would end wasmig's transaction or bypass its savepoints
//! (`COMMIT`, `ROLLBACK`, `END`, `ABORT`, `BEGIN`, `START TRANSACTION`, `SAVEPOINT`,
//! `RELEASE`, `ROLLBACK TO`, `PREPARE TRANSACTION`, `COMMIT PREPARED`…).
//!
//! Every revision runs in one transaction together with its version-table update. A
//! statement that commits or rolls back would let wasmig report a step whose work landed in
//! another transaction (or nowhere), so every statement a migration sends, from a guest or
//! from a SQL revision's script, is checked here before it reaches the database.
//!
//! On PostgreSQL the server's own parser splits and judges each statement (`pg_parse`). On
//! SQLite the check is lexical: statements are split at `;` outside quotes, comments and
//! trigger bodies (`BEGIN … END` of a `CREATE TRIGGER`), and each is judged by its first
//! keyword(s), as `sqlite3_complete` does. What either misses is caught by the runner,
//! which checks the transaction's identity before recording the step
//! ([`super::Session::transaction_intact`]).
//!
//! Under [`Policy::UNTRUSTED`] the same check also holds every statement to the untrusted
//! SQL policy (`policy`): on PostgreSQL in the same parse, on SQLite by the same split.
//!
//! Not here: running the statements (`postgres`, `sqlite`), the policy's rules (`policy`).

#![allow(clippy::result_large_err)]

use crate::pg_parse::Refusal;
use crate::policy::Policy;
use wasmig_contract::{Dialect, SqlError};

/// Refuses `sql` (one statement or a script) if any statement in it is transaction control,
/// or is refused by `policy`.
///
/// # Errors
/// `WASMIG-STATE`, naming the statement and saying what to do instead; `WASMIG-POLICY`
/// naming the rule.
pub(crate) fn check(sql: &str, dialect: Dialect, policy: &Policy) -> Result<(), SqlError> {
    refuse_control(sql, dialect, policy, IN_TRANSACTION_WHY, false)
}

/// [`check`] for the `COPY ... FROM STDIN` wasmig sends itself for a guest's `copy-in`,
/// with the rows it holds: held to the policy and the revision's capabilities like any
/// statement, but not refused for copying from the client.
///
/// # Errors
/// As [`check`].
pub(crate) fn check_own_copy(sql: &str, policy: &Policy) -> Result<(), SqlError> {
    refuse_control(sql, Dialect::Postgres, policy, IN_TRANSACTION_WHY, true)
}

/// Why transaction control is refused in a step's transaction.
const IN_TRANSACTION_WHY: &str = "wasmig runs each revision in \
     one transaction together with its version-table update, and commits or \
     rolls it back itself; remove the statement, and to undo part of the work \
     use a savepoint (`db::savepoint` in the Rust SDK, `begin-savepoint` in the \
     WIT) rather than raw SAVEPOINT/ROLLBACK TO";

/// Why a `COPY` to or from the client is refused.
const CLIENT_COPY_WHY: &str = "the client is wasmig, which has no rows to send and \
     takes none back; insert rows with INSERT (from a component, `copy-in`: \
     `db::copy_in` in the Rust SDK), read them with SELECT, and move files with an \
     operator's `psql \\copy` outside the migration";

/// [`check`] for a `transaction = "none"` script, whose statements wasmig commits one by
/// one: transaction control there would make several statements share a transaction
/// wasmig does not know about.
///
/// # Errors
/// `WASMIG-STATE`, naming the statement; `WASMIG-POLICY` naming the rule.
pub(crate) fn check_autocommit(
    sql: &str,
    dialect: Dialect,
    policy: &Policy,
) -> Result<(), SqlError> {
    refuse_control(
        sql,
        dialect,
        policy,
        "wasmig runs this script statement by statement, committing each on its own \
         (`transaction = \"none\"`, or a script with DDL on MySQL or under \
         `execution = \"per-statement\"`), and transaction control would leave the script in \
         a transaction wasmig does not know about; remove the statement (under \
         `transaction = \"none\"`, dropping that setting runs the whole revision in one \
         transaction where the database allows it)",
        false,
    )
}

/// The first statement of `sql` refused (transaction control for `why`, or the other
/// refusals with their own reasons), as `WASMIG-STATE` or `WASMIG-POLICY`; with
/// `own_copy`, a `COPY` to or from the client passes (wasmig's own `copy-in`).
fn refuse_control(
    sql: &str,
    dialect: Dialect,
    policy: &Policy,
    why: &str,
    own_copy: bool,
) -> Result<(), SqlError> {
    let at = |n: usize, several: bool| {
        if several {
            format!(" (statement {} of the script)", n + 1)
        } else {
            String::new()
        }
    };
    let ((n, keyword, why), several) = match dialect {
        // PostgreSQL's own parser, under both readings of backslashes (`pg_parse`).
        Dialect::Postgres => match crate::pg_parse::judge(sql, policy)? {
            None => return Ok(()),
            Some((n, Refusal::Control(keyword))) => ((n, keyword, why), sql.contains(';')),
            Some((n, Refusal::Lexing(what))) => ((n, what, LEXING_WHY), sql.contains(';')),
            Some((n, Refusal::Unlock(what))) => ((n, what, UNLOCK_WHY), sql.contains(';')),
            Some((_, Refusal::ClientCopy(_))) if own_copy => return Ok(()),
            Some((n, Refusal::ClientCopy(what))) => {
                ((n, what.to_owned(), CLIENT_COPY_WHY), sql.contains(';'))
            }
            Some((n, Refusal::Policy(v))) => return Err(v.error(&at(n, sql.contains(';')), policy)),
        },
        // A lexical check under both readings of a backslash (`mysql::lex`).
        Dialect::Mysql => {
            if policy.is_untrusted() {
                return Err(SqlError::wasmig(
                    "POLICY",
                    "untrusted mode's SQL policy is not enforced on MySQL yet, so wasmig refuses to run untrusted migrations there; run them on PostgreSQL, or trust the revision",
                ));
            }
            let several = crate::mysql::lex::statements(sql)?.len() > 1;
            match crate::mysql::lex::first_control(sql) {
                None => return Ok(()),
                Some((n, keyword)) => ((n, keyword.to_owned(), why), several),
            }
        }
        Dialect::Sqlite => {
            let statements = split(sql, dialect);
            let several = statements.len() > 1;
            match statements.iter().enumerate().find_map(|(n, s)| {
                let refused = match control_keyword(&s.lead) {
                    Some(k) => Some(Ok(k.to_owned())),
                    None => policy
                        .is_untrusted()
                        .then(|| crate::policy::sqlite_violation(s.text, &s.lead))
                        .flatten()
                        .or_else(|| {
                            let allowed = policy.allowed()?;
                            crate::policy::capabilities::missing_sqlite(s.text, &s.lead, allowed)
                        })
                        .map(Err),
                };
                refused.map(|r| (n, r))
            }) {
                None => return Ok(()),
                Some((n, Err(v))) => return Err(v.error(&at(n, several), policy)),
                Some((n, Ok(keyword))) => ((n, keyword, why), several),
            }
        }
    };
    let at = at(n, several);
    Err(SqlError::wasmig(
        "STATE",
        format!("`{keyword}`{at} is not allowed in a migration: {why}"),
    ))
}

/// Why a call that releases advisory locks is refused.
const UNLOCK_WHY: &str = "wasmig marks the session a step runs on with an advisory lock, \
     which tells a run that takes over after this one was killed that the step is still at \
     work; remove the call (a migration's own advisory locks end with its transaction if it \
     takes them with pg_advisory_xact_lock)";

/// Why a statement that changes how the server reads SQL is refused.
const LEXING_WHY: &str = "wasmig checks every statement with PostgreSQL's own parser, \
     which reads SQL as the server does only with standard_conforming_strings on and \
     client_encoding UTF8, the settings wasmig gives migration sessions; remove the \
     statement (write backslash escapes as E'...' strings instead)";

/// The statements of a script, in order, without their terminating `;`, leaving out empty
/// ones (only whitespace and comments): how a `transaction = "none"` revision runs its
/// script, one autocommitted statement at a time. PostgreSQL's are split by its own parser.
///
/// # Errors
/// On PostgreSQL, a script its parser cannot read (SQLSTATE 42601).
pub(crate) fn statements(script: &str, dialect: Dialect) -> Result<Vec<&str>, SqlError> {
    match dialect {
        Dialect::Postgres => Ok(crate::pg_parse::parse(script, &Policy::TRUSTED)?
            .into_iter()
            .map(|s| s.text)
            .collect()),
        Dialect::Mysql => Ok(crate::mysql::lex::statements(script)?
            .into_iter()
            .map(|s| s.text)
            .collect()),
        Dialect::Sqlite => Ok(split(script, dialect)
            .into_iter()
            .filter(|s| !s.lead.is_empty() || !only_comments(s.text))
            .map(|s| s.text)
            .collect()),
    }
}

/// Whether `text` holds nothing but whitespace and `--` or `/* */` comments.
fn only_comments(text: &str) -> bool {
    let mut rest = text;
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, tail)| tail);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, tail)| tail);
        } else {
            return rest.is_empty();
        }
    }
}

/// The transaction-control keywords one statement starts with, as written (`END`, not the
/// `COMMIT` it means), if any.
pub(crate) fn keyword_of(statement: &str) -> Option<&'static str> {
    split(statement, Dialect::Postgres)
        .first()
        .and_then(|s| control_keyword(&s.lead))
}

/// The first word of `sql`'s first statement, upper-cased, by SQLite's lexical rules.
pub(crate) fn first_word(sql: &str) -> Option<String> {
    split(sql, Dialect::Sqlite)
        .into_iter()
        .find(|s| !s.lead.is_empty())
        .and_then(|s| s.lead.into_iter().next())
}

/// The transaction-control statement a statement's leading words make, if any.
fn control_keyword(lead: &[String]) -> Option<&'static str> {
    let first = lead.first()?.as_str();
    let second = lead.get(1).map(String::as_str);
    Some(match (first, second) {
        ("BEGIN", _) => "BEGIN",
        ("START", Some("TRANSACTION")) => "START TRANSACTION",
        ("COMMIT", Some("PREPARED")) => "COMMIT PREPARED",
        ("COMMIT", _) => "COMMIT",
        ("END", _) => "END",
        ("ABORT", _) => "ABORT",
        ("ROLLBACK", Some("TO")) => "ROLLBACK TO",
        ("ROLLBACK", Some("PREPARED")) => "ROLLBACK PREPARED",
        ("ROLLBACK", _) => "ROLLBACK",
        ("SAVEPOINT", _) => "SAVEPOINT",
        ("RELEASE", _) => "RELEASE",
        // `PREPARE TRANSACTION 'id'`, not `PREPARE name AS …` (a prepared statement).
        ("PREPARE", Some("TRANSACTION")) if lead.len() == 2 => "PREPARE TRANSACTION",
        _ => return None,
    })
}

/// One statement of a script.
#[derive(Debug)]
struct Statement<'a> {
    /// Its text, without the terminating `;`.
    text: &'a str,
    /// Its first words (uppercased, at most [`LEAD_WORDS`]), up to the first token that is
    /// not a word; comments and whitespace between them are skipped.
    lead: Vec<String>,
}

/// How many leading words are kept: enough for `CREATE OR REPLACE FUNCTION`.
const LEAD_WORDS: usize = 4;

/// Whether the leading words open a statement whose body may contain `;` between `BEGIN` (or
/// `CASE`) and `END`.
fn has_body(lead: &[String], dialect: Dialect) -> bool {
    let word = |i: usize| lead.get(i).map_or("", String::as_str);
    if word(0) != "CREATE" {
        return false;
    }
    match dialect {
        Dialect::Sqlite => {
            word(1) == "TRIGGER"
                || (matches!(word(1), "TEMP" | "TEMPORARY") && word(2) == "TRIGGER")
        }
        // MySQL is read by `mysql::lex`.
        Dialect::Mysql => false,
        Dialect::Postgres => {
            matches!(word(1), "FUNCTION" | "PROCEDURE")
                || (word(1) == "OR"
                    && word(2) == "REPLACE"
                    && matches!(word(3), "FUNCTION" | "PROCEDURE"))
        }
    }
}

fn is_word_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_word_char(b: u8, dialect: Dialect) -> bool {
    is_word_start(b) || b.is_ascii_digit() || (b == b'$' && dialect == Dialect::Postgres)
}

/// Splits a script into statements at `;` outside quotes, comments and bodies. Empty
/// statements (only whitespace or comments) are kept; they have no leading words.
fn split(script: &str, dialect: Dialect) -> Vec<Statement<'_>> {
    let pg = dialect == Dialect::Postgres;
    let b = script.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let mut lead: Vec<String> = Vec::new();
    // Whether the leading words are still being collected (no other token seen yet).
    let mut leading = true;
    // Depth of BEGIN/CASE … END inside a body, and of parentheses (psql does not split
    // inside them either: think of a rule's `DO ALSO (…; …)`).
    let mut depth = 0usize;
    let mut parens = 0usize;
    while i < b.len() {
        let c = b[i];
        match c {
            b';' if depth == 0 && parens == 0 => {
                out.push(Statement {
                    text: &script[start..i],
                    lead: std::mem::take(&mut lead),
                });
                leading = true;
                i += 1;
                start = i;
                continue;
            }
            b'(' | b')' => {
                leading = false;
                parens = if c == b'(' {
                    parens + 1
                } else {
                    parens.saturating_sub(1)
                };
                i += 1;
            }
            _ if c.is_ascii_whitespace() => i += 1,
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = memchr(b, i, b'\n').map_or(b.len(), |n| n + 1);
            }
            b'/' if b.get(i + 1) == Some(&b'*') => i = skip_block_comment(b, i, pg),
            b'\'' => {
                leading = false;
                i = skip_quoted(b, i, b'\'', false);
            }
            b'"' => {
                leading = false;
                i = skip_quoted(b, i, b'"', false);
            }
            b'`' | b'[' if !pg => {
                leading = false;
                let close = if c == b'[' { b']' } else { b'`' };
                i = skip_quoted(b, i, close, false);
            }
            b'$' if pg => {
                leading = false;
                i = match dollar_tag(b, i) {
                    Some(tag) => find(b, i + tag.len(), tag).map_or(b.len(), |n| n + tag.len()),
                    None => i + 1,
                };
            }
            _ if c.is_ascii_digit() => {
                leading = false;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.')
                {
                    i += 1;
                }
            }
            _ if is_word_start(c) => {
                let begin = i;
                while i < b.len() && is_word_char(b[i], dialect) {
                    i += 1;
                }
                let word = &script[begin..i];
                // A string prefix: E'…' (backslash escapes), also U&'…', B'…', X'…'.
                if b.get(i) == Some(&b'\'') && pg && word.eq_ignore_ascii_case("e") {
                    leading = false;
                    i = skip_quoted(b, i, b'\'', true);
                    continue;
                }
                let upper = word.to_ascii_uppercase();
                if leading && lead.len() < LEAD_WORDS {
                    lead.push(upper.clone());
                }
                if has_body(&lead, dialect) {
                    match upper.as_str() {
                        "BEGIN" => depth += 1,
                        "CASE" if depth > 0 => depth += 1,
                        "END" if depth > 0 => depth -= 1,
                        _ => {}
                    }
                }
            }
            _ => {
                leading = false;
                i += 1;
            }
        }
    }
    if start < b.len() {
        out.push(Statement {
            text: &script[start..],
            lead,
        });
    }
    out
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

/// Skips a `/* … */` comment starting at `i` (nested on PostgreSQL, not on SQLite).
fn skip_block_comment(b: &[u8], mut i: usize, nested: bool) -> usize {
    let mut depth = 0usize;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'*') && (nested || depth == 0) {
            depth += 1;
            i += 2;
        } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

/// Skips a quoted string or identifier opened at `i`; a doubled closing quote is part of
/// it, and with `backslash` a backslash escapes the next byte.
pub(crate) fn skip_quoted(b: &[u8], open: usize, close: u8, backslash: bool) -> usize {
    let mut i = open + 1;
    while i < b.len() {
        if backslash && b[i] == b'\\' {
            i += 2;
        } else if b[i] == close {
            if close != b']' && b.get(i + 1) == Some(&close) {
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

/// The dollar-quote tag (`$$` or `$tag$`) starting at `i`, if one does.
fn dollar_tag(b: &[u8], i: usize) -> Option<&[u8]> {
    let mut j = i + 1;
    if b.get(j).is_some_and(|&c| is_word_start(c)) {
        while b
            .get(j)
            .is_some_and(|&c| is_word_start(c) || c.is_ascii_digit())
        {
            j += 1;
        }
    }
    (b.get(j) == Some(&b'$')).then(|| &b[i..=j])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(sql: &str, dialect: Dialect) -> Option<String> {
        check(sql, dialect, &Policy::TRUSTED).err().map(|e| {
            // An unterminated quote or body is a syntax error to PostgreSQL's parser (and to
            // the server): refused all the same, before anything runs.
            let syntax = dialect == Dialect::Postgres && e.code == "42601";
            assert!(e.code == "WASMIG-STATE" || syntax, "{sql}: {e:?}");
            e.message
        })
    }

    fn texts(script: &str, dialect: Dialect) -> Vec<String> {
        split(script, dialect)
            .iter()
            .map(|s| s.text.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    }

    #[test]
    fn statements_leave_out_empty_ones_and_keep_bodies_whole() {
        let script = "-- header\nCREATE TABLE t (x int);\n\nCREATE INDEX CONCURRENTLY i ON t (x);\n-- done\n";
        assert_eq!(
            statements(script, Dialect::Postgres)
                .unwrap()
                .iter()
                .map(|s| s.trim())
                .collect::<Vec<_>>(),
            // PostgreSQL's parser starts a statement at its first token.
            [
                "CREATE TABLE t (x int)",
                "CREATE INDEX CONCURRENTLY i ON t (x)"
            ]
        );
        let body = "CREATE FUNCTION f() RETURNS int BEGIN ATOMIC SELECT 1; END; SELECT 2;";
        assert_eq!(statements(body, Dialect::Postgres).unwrap().len(), 2);
        assert!(
            statements("  /* c */ ;; -- x", Dialect::Sqlite)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn transaction_control_is_refused_on_both_dialects() {
        for dialect in [Dialect::Postgres, Dialect::Sqlite] {
            for (sql, keyword) in [
                ("COMMIT", "`COMMIT`"),
                ("commit;", "`COMMIT`"),
                ("  \n\tCoMmIt WORK", "`COMMIT`"),
                ("-- finish\nCOMMIT", "`COMMIT`"),
                ("/* finish */ END", "`END`"),
                ("ROLLBACK", "`ROLLBACK`"),
                ("rollback to savepoint x", "`ROLLBACK TO`"),
                ("ABORT", "`ABORT`"),
                ("BEGIN", "`BEGIN`"),
                ("begin immediate", "`BEGIN`"),
                (
                    "START TRANSACTION ISOLATION LEVEL SERIALIZABLE",
                    "`START TRANSACTION`",
                ),
                ("SAVEPOINT s", "`SAVEPOINT`"),
                ("RELEASE SAVEPOINT s", "`RELEASE`"),
                ("release s", "`RELEASE`"),
                ("PREPARE TRANSACTION 'x'", "`PREPARE TRANSACTION`"),
                ("COMMIT PREPARED 'x'", "`COMMIT PREPARED`"),
                ("ROLLBACK PREPARED 'x'", "`ROLLBACK PREPARED`"),
                (
                    "CREATE TABLE t (x int); COMMIT; CREATE TABLE u (y int)",
                    "`COMMIT` (statement 2 of the script)",
                ),
                (
                    "SELECT 1;\n-- c\n/* d */ ROLLBACK",
                    "`ROLLBACK` (statement 2",
                ),
            ] {
                if dialect == Dialect::Postgres && sql == "begin immediate" {
                    continue; // SQLite's syntax
                }
                let message = refused(sql, dialect)
                    .unwrap_or_else(|| panic!("{dialect:?}: `{sql}` was not refused"));
                assert!(message.starts_with(keyword), "{message}");
                assert!(message.contains("savepoint"), "{message}");
            }
        }
    }

    #[test]
    fn ordinary_statements_and_quoted_keywords_pass() {
        for dialect in [Dialect::Postgres, Dialect::Sqlite] {
            for sql in [
                "SELECT 'COMMIT'",
                "INSERT INTO t VALUES ('x; COMMIT; y')",
                "INSERT INTO t VALUES ('it''s; COMMIT')",
                "SELECT 1 -- ; COMMIT\n",
                "SELECT 1 /* ; COMMIT */",
                "SELECT \"commit\" FROM t; SELECT \"x;end\" FROM t",
                "UPDATE t SET commit_at = now(); SELECT begin_date, end_date FROM t",
                "PREPARE q AS SELECT 1",
                "CREATE TABLE rollback_log (x int)",
                "SELECT CASE WHEN x THEN 1 ELSE 0 END FROM t",
                "",
                " ;; ",
                "-- only a comment",
            ] {
                assert_eq!(refused(sql, dialect), None, "{dialect:?}: {sql}");
            }
        }
    }

    #[test]
    fn postgres_dollar_quotes_escape_strings_and_nested_comments_hide_keywords() {
        let pg = Dialect::Postgres;
        for sql in [
            "DO $$ BEGIN PERFORM 1; END $$",
            "CREATE FUNCTION f() RETURNS int AS $body$ BEGIN RETURN 1; END; $body$ LANGUAGE plpgsql; SELECT f()",
            "SELECT $q$ ; COMMIT; $q$",
            "SELECT E'\\'; COMMIT; '",
            "SELECT 1 /* outer /* inner */ ; COMMIT */",
            "SELECT $1::int; SELECT a$b FROM t",
            "CREATE FUNCTION g() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 END; END; SELECT g()",
            "CREATE OR REPLACE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC INSERT INTO t VALUES (1); END",
        ] {
            assert_eq!(refused(sql, pg), None, "{sql}");
        }
        assert_eq!(
            texts("DO $$ BEGIN PERFORM 1; END $$; COMMIT", pg),
            ["DO $$ BEGIN PERFORM 1; END $$", "COMMIT"]
        );
        assert_eq!(
            texts(
                "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); NOTIFY a); SELECT 1",
                pg
            )
            .len(),
            2
        );
        assert!(refused("SELECT $tag$ x $tag$; END", pg).is_some());
        assert!(
            refused(
                "CREATE FUNCTION g() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END; COMMIT",
                pg
            )
            .is_some()
        );
        // In SQLite `$` starts a parameter, not a quote; brackets quote only there. On
        // PostgreSQL the dollar quote is unterminated: a syntax error, refused, not run.
        assert_eq!(
            check("SELECT $$; COMMIT", pg, &Policy::TRUSTED)
                .unwrap_err()
                .code,
            "42601"
        );
        assert!(refused("SELECT $$; COMMIT", Dialect::Sqlite).is_some());
        assert!(refused("SELECT a[1]; COMMIT", pg).is_some());
    }

    #[test]
    fn a_sqlite_trigger_body_is_one_statement_with_its_end() {
        let lite = Dialect::Sqlite;
        let script = "CREATE TABLE t (x int);
            CREATE TRIGGER trg AFTER INSERT ON t BEGIN
                INSERT INTO log VALUES (new.x);
                UPDATE t SET x = CASE WHEN new.x > 0 THEN 1 ELSE 0 END WHERE rowid = new.rowid;
            END;
            CREATE TEMP TRIGGER IF NOT EXISTS trg2 BEFORE DELETE ON t BEGIN SELECT 1; END;
            INSERT INTO t VALUES (1)";
        assert_eq!(refused(script, lite), None);
        let parts = texts(script, lite);
        assert_eq!(parts.len(), 4, "{parts:#?}");
        assert!(parts[1].ends_with("END"), "{}", parts[1]);
        assert!(refused(&format!("{script}; END"), lite).is_some());
        assert!(refused("SELECT [commit; x]; SELECT `end;`", lite).is_none());
    }
}

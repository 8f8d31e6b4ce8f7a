//! A migration's SQL as far as transactions go: which statements PostgreSQL refuses inside a
//! transaction block (and which of them Flyway's PostgreSQL parser recognises), and a file's
//! own `BEGIN` ... `COMMIT` around all its statements, which wasmig cuts out: it runs each
//! revision in one transaction of its own, and refuses transaction control inside it.
//!
//! Statements are split by the caller's [`Split`] (PostgreSQL's own parser, handed in by the
//! `wasmig` library): this crate reads no file and links no parser. Within one statement a
//! small lexer here reads the leading keywords, past comments, literals and parentheses.
//!
//! Not here: refusing transaction control when a revision runs (the `db` crate's
//! `tx_control`), the tools' own transaction settings (each tool's module).

/// Splits a script into its statements as PostgreSQL's parser does: each a slice of the
/// script, in order, empty ones left out; `None` when the parser cannot read the script.
pub type Split = dyn Fn(&str) -> Option<Vec<&str>>;

/// What [`unwrap`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Control {
    /// No transaction control (or a script the parser cannot read: running it says why).
    None,
    /// One plain `BEGIN` ... `COMMIT` around every statement: the script without them.
    Wrapped(String),
}

/// The script without its own `BEGIN` and `COMMIT`, when it is one plain block: its first
/// statement `BEGIN` (`TRANSACTION`, `WORK`) or `START TRANSACTION`, its last `COMMIT` or
/// `END` (`;` optional), and no other transaction control. Only those two statements are
/// cut; every other byte, comments around them included, is kept.
///
/// # Errors
/// Why the script's transaction control cannot be carried over (a `BEGIN` with options, two
/// blocks, a `ROLLBACK`, a `SAVEPOINT`...), naming the statement.
pub(crate) fn unwrap(script: &str, split: &Split) -> Result<Control, String> {
    let Some(statements) = split(script) else {
        return Ok(Control::None);
    };
    let controls: Vec<bool> = statements.iter().map(|s| is_control(s)).collect();
    if !controls.contains(&true) {
        return Ok(Control::None);
    }
    let last = statements.len() - 1;
    let opened = is_plain(statements[0], BEGIN);
    let wrapped = last > 0 && opened && is_plain(statements[last], COMMIT);
    // The statement to name: past a plain BEGIN, the first control after it (a COMMIT in
    // the middle, a ROLLBACK at the end), else the first.
    let refused = controls
        .iter()
        .enumerate()
        .skip(usize::from(opened))
        .find(|(i, control)| **control && !(wrapped && *i == last))
        .map(|(i, _)| i)
        .or((!wrapped).then_some(0));
    if let Some(i) = refused {
        return Err(format!(
            "statement {} of {} (`{}`) is transaction control; wasmig runs each revision in one transaction of its own and refuses transaction control inside it, and takes a file wrapped whole in one plain `BEGIN;` ... `COMMIT;` (no isolation level or other option) by cutting those two statements out, but not this: make the file one such block, or remove its transaction control (split it into several migrations if it needs several transactions), then import again",
            i + 1,
            statements.len(),
            shown(statements[i])
        ));
    }
    let (Some(begin), Some(commit)) = (cut(script, statements[0]), cut(script, statements[last]))
    else {
        // The splitter did not hand back slices of the script: cannot cut, run as it is.
        return Ok(Control::None);
    };
    Ok(Control::Wrapped(format!(
        "{}{}{}",
        &script[..begin.0],
        &script[begin.1..commit.0],
        &script[commit.1..]
    )))
}

/// Whether PostgreSQL runs a script sent as one query (golang-migrate's every file; Diesel,
/// sqlx, dbmate and refinery's files without a transaction) outside a transaction: it is
/// one statement, and one that refuses a transaction block. A query of several statements
/// runs in one implicit transaction, where such a statement fails.
pub(crate) fn runs_alone(text: &str, split: &Split) -> bool {
    split(text).is_some_and(
        |s| matches!(s.as_slice(), [one] if postgres_refuses_block(one) || may_commit(one)),
    )
}

/// Whether a statement may end its own transaction from inside, which PostgreSQL allows
/// only outside a transaction block (2D000 "invalid transaction termination" in one): a
/// `CALL` (a procedure may `COMMIT`), or a `DO` block whose body says `COMMIT` or
/// `ROLLBACK` (read as words, a comment or string of the body's included: such a statement
/// alone runs the same either way, but for that).
pub(crate) fn may_commit(statement: &str) -> bool {
    let tokens = lex(statement);
    let first = tokens
        .iter()
        .find(|t| t.kind == Kind::Word)
        .map(|t| statement[t.start..t.end].to_ascii_uppercase());
    match first.as_deref() {
        Some("CALL") => true,
        Some("DO") => tokens.iter().filter(|t| t.kind == Kind::Other).any(|t| {
            let body = quoted_body(&statement[t.start..t.end]);
            lex(body).iter().any(|w| {
                w.kind == Kind::Word
                    && matches!(
                        body[w.start..w.end].to_ascii_uppercase().as_str(),
                        "COMMIT" | "ROLLBACK"
                    )
            })
        }),
        _ => false,
    }
}

/// What a quoted token holds between its quotes: `$tag$…$tag$`, `'…'`, `E'…'` (the
/// token itself when it is not quoted).
fn quoted_body(token: &str) -> &str {
    if let Some(rest) = token.strip_prefix('$')
        && let Some(end) = rest.find('$')
    {
        let tag = end + 2;
        return token
            .get(tag..token.len().saturating_sub(tag))
            .unwrap_or("");
    }
    let token = token.strip_prefix(['E', 'e']).unwrap_or(token);
    token
        .strip_prefix('\'')
        .and_then(|t| t.strip_suffix('\''))
        .unwrap_or(token)
}

/// Whether a statement PostgreSQL refuses inside a transaction block (`CREATE INDEX
/// CONCURRENTLY`, `VACUUM`, ...): it runs only as a statement of its own.
pub(crate) fn postgres_refuses_block(statement: &str) -> bool {
    let w = words(statement);
    let w: Vec<&str> = w.iter().map(String::as_str).collect();
    let has = |word: &str| w.contains(&word);
    matches!(
        w.as_slice(),
        ["CREATE" | "DROP", "INDEX", "CONCURRENTLY", ..]
            | ["CREATE", "UNIQUE", "INDEX", "CONCURRENTLY", ..]
            | ["VACUUM", ..]
            | ["ALTER", "SYSTEM", ..]
            | [
                "CREATE" | "DROP",
                "DATABASE" | "TABLESPACE" | "SUBSCRIPTION",
                ..
            ]
            | ["REINDEX", "SCHEMA" | "DATABASE" | "SYSTEM", ..]
            | ["DISCARD", "ALL"]
            | ["CLUSTER"]
    ) || (w.first() == Some(&"REINDEX") && has("CONCURRENTLY"))
        || (w.first() == Some(&"ALTER") && has("DETACH") && has("CONCURRENTLY"))
        || (w.starts_with(&["ALTER", "DATABASE"]) && has("TABLESPACE") && has("SET"))
        || (w.first() == Some(&"ALTER") && has("SUBSCRIPTION") && has("REFRESH"))
}

/// Whether Flyway's PostgreSQL parser runs a migration holding this statement outside a
/// transaction (`PostgreSQLParser.detectCanExecuteInTransaction`, flyway 11: the statement's
/// first keywords outside parentheses). Its `ALTER TYPE ... ADD VALUE`, only before
/// PostgreSQL 12, is left out: wasmig supports 12 and later.
pub(crate) fn flyway_refuses_transaction(statement: &str) -> bool {
    let w = words(statement);
    let w: Vec<&str> = w.iter().map(String::as_str).collect();
    matches!(
        w.as_slice(),
        [
            "CREATE" | "DROP",
            "DATABASE" | "TABLESPACE" | "SUBSCRIPTION",
            ..
        ] | ["ALTER", "SYSTEM", ..]
            | ["CREATE" | "DROP", "INDEX", "CONCURRENTLY", ..]
            | ["CREATE" | "DROP", "UNIQUE", "INDEX", "CONCURRENTLY", ..]
            | ["REINDEX", "SCHEMA" | "DATABASE" | "SYSTEM", ..]
            | ["REINDEX", "VERBOSE", "SCHEMA" | "DATABASE" | "SYSTEM", ..]
            | ["VACUUM", ..]
            | ["DISCARD", "ALL", ..]
    )
}

/// Whether a script ends with a `;` (comments after it aside): what follows it starts a
/// statement of its own.
pub(crate) fn is_terminated(script: &str) -> bool {
    lex(script)
        .last()
        .is_some_and(|t| t.kind == Kind::Semicolon)
}

/// The plain forms of the two statements [`unwrap`] cuts.
const BEGIN: &[&[&str]] = &[
    &["BEGIN"],
    &["BEGIN", "TRANSACTION"],
    &["BEGIN", "WORK"],
    &["START", "TRANSACTION"],
];
const COMMIT: &[&[&str]] = &[
    &["COMMIT"],
    &["COMMIT", "TRANSACTION"],
    &["COMMIT", "WORK"],
    &["END"],
    &["END", "TRANSACTION"],
    &["END", "WORK"],
];

/// Whether a statement starts, commits, rolls back or marks a transaction (what PostgreSQL's
/// parser reads as a `TransactionStmt`).
fn is_control(statement: &str) -> bool {
    let w = words(statement);
    match w.first().map(String::as_str) {
        Some("BEGIN" | "COMMIT" | "END" | "ROLLBACK" | "ABORT" | "SAVEPOINT" | "RELEASE") => true,
        Some("START" | "PREPARE") => w.get(1).map(String::as_str) == Some("TRANSACTION"),
        _ => false,
    }
}

/// Whether a statement is exactly one of `forms`: nothing but those keywords (and comments).
fn is_plain(statement: &str, forms: &[&[&str]]) -> bool {
    let tokens = lex(statement);
    let words: Option<Vec<String>> = tokens
        .iter()
        .filter(|t| t.kind != Kind::Semicolon)
        .map(|t| (t.kind == Kind::Word).then(|| statement[t.start..t.end].to_ascii_uppercase()))
        .collect();
    words.is_some_and(|w| forms.iter().any(|f| w == *f))
}

/// The byte range of `script` that [`unwrap`] cuts for the plain statement `piece` (a slice
/// of it): from its first keyword to its `;` (or its last keyword, when none follows).
fn cut(script: &str, piece: &str) -> Option<(usize, usize)> {
    let offset = (piece.as_ptr() as usize).checked_sub(script.as_ptr() as usize)?;
    if offset + piece.len() > script.len() {
        return None;
    }
    let rest = &script[offset..];
    let mut start = None;
    let mut end = None;
    for token in lex(rest) {
        match token.kind {
            Kind::Word => {
                start.get_or_insert(token.start);
                end = Some(token.end);
            }
            Kind::Semicolon => {
                end = Some(token.end);
                break;
            }
            Kind::Other => break,
        }
    }
    Some((offset + start?, offset + end?))
}

/// A statement as a message shows it: from its first keyword, on one line, shortened.
pub(crate) fn shown(statement: &str) -> String {
    let from = lex(statement).first().map_or(0, |t| t.start);
    let one_line: Vec<&str> = statement[from..].split_whitespace().collect();
    let text = one_line.join(" ");
    match text.char_indices().nth(60) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text,
    }
}

/// The keywords of a statement outside parentheses, upper-cased (identifiers alike).
fn words(statement: &str) -> Vec<String> {
    lex(statement)
        .into_iter()
        .filter(|t| t.kind == Kind::Word && t.depth == 0)
        .map(|t| statement[t.start..t.end].to_ascii_uppercase())
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A keyword or an unquoted identifier.
    Word,
    Semicolon,
    /// Anything else: a literal, a quoted identifier, a number, an operator, a parenthesis.
    Other,
}

#[derive(Debug)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
    /// How many parentheses it is in.
    depth: usize,
}

/// PostgreSQL's tokens, as far as telling keywords from everything else goes: whitespace
/// and comments (`--`, nested `/* */`) skipped; `'...'` (`E'...'` with backslash escapes),
/// `"..."` and `$tag$...$tag$` taken whole.
fn lex(sql: &str) -> Vec<Token> {
    let bytes = sql.as_bytes();
    let mut tokens = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    let is_word_start = |b: u8| b.is_ascii_alphabetic() || b == b'_' || b >= 0x80;
    let is_word = |b: u8| is_word_start(b) || b.is_ascii_digit() || b == b'$';
    while i < bytes.len() {
        let b = bytes[i];
        let start = i;
        let kind = match b {
            _ if b.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = sql[i..].find('\n').map_or(bytes.len(), |n| i + n + 1);
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let mut nesting = 0usize;
                while i < bytes.len() {
                    if bytes[i..].starts_with(b"/*") {
                        nesting += 1;
                        i += 2;
                    } else if bytes[i..].starts_with(b"*/") {
                        nesting -= 1;
                        i += 2;
                        if nesting == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                continue;
            }
            b';' => {
                i += 1;
                Kind::Semicolon
            }
            b'\'' => {
                i = quoted(bytes, i, b'\'', false);
                Kind::Other
            }
            b'"' => {
                i = quoted(bytes, i, b'"', false);
                Kind::Other
            }
            b'$' => {
                i = dollar_quoted(sql, i);
                Kind::Other
            }
            _ if is_word_start(b) => {
                while i < bytes.len() && is_word(bytes[i]) {
                    i += 1;
                }
                // `E'...'`: an escape string, backslashes escaping.
                if i - start == 1 && matches!(b, b'e' | b'E') && bytes.get(i) == Some(&b'\'') {
                    i = quoted(bytes, i, b'\'', true);
                    Kind::Other
                } else {
                    Kind::Word
                }
            }
            b'(' => {
                depth += 1;
                i += 1;
                Kind::Other
            }
            b')' => {
                depth = depth.saturating_sub(1);
                i += 1;
                Kind::Other
            }
            _ => {
                i += sql[i..].chars().next().map_or(1, char::len_utf8);
                Kind::Other
            }
        };
        let depth_here = if b == b'(' { depth - 1 } else { depth };
        tokens.push(Token {
            kind,
            start,
            end: i,
            depth: depth_here,
        });
    }
    tokens
}

/// The end of a literal opened by `quote` at `at` (a doubled quote stays inside).
fn quoted(bytes: &[u8], at: usize, quote: u8, backslashes: bool) -> usize {
    let mut i = at + 1;
    while i < bytes.len() {
        if backslashes && bytes[i] == b'\\' {
            i += 2;
        } else if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// The end of a `$tag$...$tag$` literal at `at`, or of a lone `$` (a parameter `$1`).
fn dollar_quoted(sql: &str, at: usize) -> usize {
    let rest = &sql[at + 1..];
    let tag_len = rest
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b >= 0x80)
        .count();
    let tag = &rest[..tag_len];
    if rest.as_bytes().get(tag_len) != Some(&b'$') || tag.starts_with(|c: char| c.is_ascii_digit())
    {
        return at + 1 + tag_len;
    }
    let delimiter = &sql[at..at + tag_len + 2];
    let body = at + delimiter.len();
    sql[body..]
        .find(delimiter)
        .map_or(sql.len(), |n| body + n + delimiter.len())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A splitter for tests: at each `;` outside what [`lex`] takes whole, empty statements
    /// left out (PostgreSQL's parser splits these scripts the same way).
    pub(crate) fn split(script: &str) -> Option<Vec<&str>> {
        let mut out = Vec::new();
        let mut from = 0;
        for t in lex(script) {
            if t.kind == Kind::Semicolon {
                out.push(&script[from..t.start]);
                from = t.end;
            }
        }
        out.push(&script[from..]);
        Some(
            out.into_iter()
                .filter(|s| lex(s).iter().any(|t| t.kind != Kind::Semicolon))
                .collect(),
        )
    }

    fn unwrapped(script: &str) -> Result<Control, String> {
        unwrap(script, &split)
    }

    #[test]
    fn a_plain_block_is_cut_out_and_every_other_byte_kept() {
        assert_eq!(
            unwrapped("-- head\nBEGIN;\nCREATE TABLE t (x int);\n/* c */ COMMIT; -- tail\n"),
            Ok(Control::Wrapped(
                "-- head\n\nCREATE TABLE t (x int);\n/* c */  -- tail\n".into()
            ))
        );
        assert_eq!(
            unwrapped("start transaction;\nSELECT 1;\nend"),
            Ok(Control::Wrapped("\nSELECT 1;\n".into()))
        );
        assert_eq!(
            unwrapped("Begin Work ;SELECT 'COMMIT;';Commit Transaction;\n"),
            Ok(Control::Wrapped("SELECT 'COMMIT;';\n".into()))
        );
        // A function body's BEGIN and END are not statements.
        assert_eq!(
            unwrapped(
                "CREATE FUNCTION f() RETURNS int AS $$ BEGIN RETURN 1; END; $$ LANGUAGE plpgsql;"
            ),
            Ok(Control::None)
        );
    }

    #[test]
    fn other_transaction_control_is_refused_naming_the_statement() {
        for (script, named) in [
            (
                "BEGIN ISOLATION LEVEL SERIALIZABLE;\nSELECT 1;\nCOMMIT;",
                "statement 1 of 3 (`BEGIN ISOLATION LEVEL SERIALIZABLE`)",
            ),
            (
                "BEGIN;\nSELECT 1;\nCOMMIT;\nSELECT 2;",
                "statement 3 of 4 (`COMMIT`)",
            ),
            ("BEGIN;\nSELECT 1;", "statement 1 of 2 (`BEGIN`)"),
            (
                "BEGIN;\nSELECT 1;\nCOMMIT;\nBEGIN;\nSELECT 2;\nCOMMIT;",
                "statement 3 of 6 (`COMMIT`)",
            ),
            ("BEGIN;\nSELECT 1;\nROLLBACK;", "`ROLLBACK`"),
            ("BEGIN;\nSAVEPOINT a;\nSELECT 1;\nCOMMIT;", "`SAVEPOINT a`"),
            ("SELECT 1;\nCOMMIT;", "statement 2 of 2"),
            ("BEGIN;", "statement 1 of 1"),
            ("BEGIN;\nSELECT 1;\nCOMMIT AND CHAIN;", "`COMMIT AND CHAIN`"),
        ] {
            let err = unwrapped(script).unwrap_err();
            assert!(err.contains(named), "{script:?}: {err}");
        }
    }

    #[test]
    fn statements_postgresql_runs_only_outside_a_transaction_are_recognised() {
        assert!(postgres_refuses_block(
            "-- an index\ncreate  unique index\n concurrently i on t (x)"
        ));
        assert!(postgres_refuses_block("VACUUM (VERBOSE) t"));
        assert!(postgres_refuses_block(
            "REINDEX (VERBOSE) TABLE CONCURRENTLY t"
        ));
        assert!(!postgres_refuses_block(
            "CREATE INDEX i ON t (x) -- not CONCURRENTLY"
        ));
        assert!(!postgres_refuses_block("SELECT 'VACUUM'"));
        assert!(may_commit("CALL archive_old_rows(30)"));
        assert!(may_commit(
            "DO $body$ BEGIN INSERT INTO t VALUES (1); COMMIT; END $body$"
        ));
        assert!(may_commit("do language plpgsql 'begin rollback; end'"));
        assert!(!may_commit(
            "DO $$ BEGIN INSERT INTO commits VALUES (1); END $$"
        ));
        assert!(!may_commit("SELECT 'CALL x()'"));
        assert!(!may_commit("COMMIT"));
        assert!(!postgres_refuses_block(
            "INSERT INTO tips VALUES ('Nightly job; vacuum runs at 3am')"
        ));
        // Flyway's parser does not see REINDEX ... CONCURRENTLY (the migration fails there).
        assert!(flyway_refuses_transaction("REINDEX (VERBOSE) SCHEMA s"));
        assert!(!flyway_refuses_transaction("REINDEX TABLE CONCURRENTLY t"));
        assert!(flyway_refuses_transaction("drop index concurrently i"));
    }

    #[test]
    fn literals_and_comments_hide_keywords_and_semicolons() {
        let script = "SELECT $x$ ; $x$, E'\\'; ', \"a;b\", $1 /* ; /* ; */ ; */ -- ;\n;SELECT 2";
        assert_eq!(
            split(script).unwrap(),
            [
                "SELECT $x$ ; $x$, E'\\'; ', \"a;b\", $1 /* ; /* ; */ ; */ -- ;\n",
                "SELECT 2"
            ]
        );
    }
}

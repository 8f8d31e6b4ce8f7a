//! A migration's PostgreSQL SQL as the server reads it: split and classified by
//! PostgreSQL's own parser (`pg_query` links libpg_query, the server's grammar and lexer),
//! not by a lexer of wasmig's.
//!
//! The server reads a string literal differently when `standard_conforming_strings` is off
//! (a backslash escapes the quote), so a statement hidden inside a literal under one
//! setting runs under the other. wasmig pins the setting on for migration sessions and
//! refuses statements that change it; and since a migration could still change it in ways
//! no parser sees (`set_config` with a computed name, inside a function), every script is
//! parsed under both settings, and a statement refused under either is refused. Whatever
//! the session's setting, the server then runs nothing this module did not judge.
//!
//! Refused: transaction control (`BEGIN`, `COMMIT`, `SAVEPOINT`, `PREPARE TRANSACTION`…),
//! changes to how the server reads the SQL that follows (`standard_conforming_strings`,
//! `client_encoding`, `RESET ALL`, `DISCARD ALL`, `set_config` naming either), all as
//! `WASMIG-STATE`. A script the parser cannot read is refused as the server would refuse
//! it (SQLSTATE 42601, the parser's message), before anything runs.
//!
//! In untrusted mode the same parse is handed to the untrusted SQL policy (`policy::pg`),
//! statement by statement under both readings: one parse for both checks.
//!
//! Not here: SQLite's statements (`tx_control`), running anything (`postgres`).

#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use pg_query::protobuf::{DiscardMode, TransactionStmtKind, VariableSetKind, a_const};
use pg_query::{NodeEnum, NodeRef, ParserOptions};
use wasmig_contract::SqlError;

use crate::policy::{Policy, PolicyKey, Violation};

/// The settings that decide how the server reads the text of the statements that follow.
pub(crate) const LEXING_SETTINGS: [&str; 2] = ["standard_conforming_strings", "client_encoding"];

/// One statement of a script, as PostgreSQL's parser split it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Parsed<'a> {
    /// Its text, without the terminating `;`.
    pub(crate) text: &'a str,
    /// Why it may not run in a migration (`None`: it may).
    pub(crate) refused: Option<Refusal>,
}

/// What a refused statement does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Ends, opens or splits a transaction: the statement's keywords, as written.
    Control(String),
    /// Changes how the server reads later SQL: the statement or call.
    Lexing(String),
    /// Releases advisory locks, among them the one that marks a session wasmig is running
    /// a step on: the call.
    Unlock(String),
    /// Copies rows to or from the client (`COPY ... FROM STDIN`, `TO STDOUT`): the
    /// statement as named, `FROM` or `TO`. The client is wasmig, which has no rows to send
    /// and takes none but through its own `copy-in`; the server would leave the connection
    /// in copy mode.
    ClientCopy(&'static str),
    /// Refused by the untrusted SQL policy (under [`Policy::UNTRUSTED`], or a capability or role limit).
    Policy(Violation),
}

/// The statements of `script` (empty ones left out) and what is refused among them, judged
/// under both settings of `standard_conforming_strings`, and under `policy`.
///
/// # Errors
/// SQLSTATE 42601 when PostgreSQL's parser cannot read `script` (with the session's
/// setting pinned on, the server could not either).
pub(crate) fn parse<'a>(script: &'a str, policy: &Policy) -> Result<Vec<Parsed<'a>>, SqlError> {
    if split_first(script) {
        return parse_large(script, policy);
    }
    parse_whole(script, policy)
}

/// Whether [`parse`] splits `script` with the standard reading of literals before it judges
/// its statements (a large script), rather than parsing it whole under both readings: then
/// the session must read literals the standard way when it runs.
pub(crate) fn split_first(script: &str) -> bool {
    script.len() > WHOLE
}

/// Scripts up to this size are parsed whole. The parser's tree of a whole script costs
/// about 130 times the script's size in memory (a 73 MB file of one million `INSERT`s took
/// 9.7 GB and 28 s), so larger ones are split first and judged one statement at a time.
const WHOLE: usize = 256 * 1024;

/// [`parse`] for a large script: split by PostgreSQL's own lexer (the server's
/// statement boundaries, with the setting pinned on), pieces that do not parse alone joined
/// to the next (a `;` inside a `BEGIN ATOMIC` body or a rule's parenthesised actions is not
/// a boundary, and what precedes it cannot parse alone), and each statement judged as
/// [`parse`] judges a whole script, under both readings. Statements that hold none of the
/// words a refused statement needs are not parsed at all (keywords cannot be escaped;
/// `set_config` can, as a `U&` identifier, hence that word too; the untrusted policy has its
/// own words, `policy::pg::might_be_refused`).
fn parse_large<'a>(script: &'a str, policy: &Policy) -> Result<Vec<Parsed<'a>>, SqlError> {
    let pieces = pg_query::split_with_scanner(script).map_err(syntax_error)?;
    let base = script.as_ptr() as usize;
    let mut out = Vec::with_capacity(pieces.len());
    let mut start: Option<usize> = None;
    for piece in pieces {
        let from = start.unwrap_or(piece.as_ptr() as usize - base);
        let to = piece.as_ptr() as usize - base + piece.len();
        let text = &script[from..to];
        if !might_be_refused(text, policy) {
            out.push(Parsed {
                text,
                refused: None,
            });
            start = None;
            continue;
        }
        match parse_whole(text, policy) {
            Ok(parsed) => {
                out.extend(parsed);
                start = None;
            }
            // Part of a statement that goes on past this `;`.
            Err(_) => start = Some(from),
        }
    }
    if let Some(from) = start {
        // The rest never parsed: the server could not read it either.
        out.extend(parse_whole(&script[from..], policy)?);
    }
    Ok(out)
}

/// Whether a statement holds a word that a refused statement needs (lowercase check).
fn might_be_refused(text: &str, policy: &Policy) -> bool {
    const WORDS: [&str; 13] = [
        "begin",
        "start",
        "commit",
        "end",
        "rollback",
        "abort",
        "savepoint",
        "release",
        "prepare",
        "set",
        "discard",
        // `pg_advisory_unlock_shared`, `pg_advisory_unlock_all` (`Refusal::Unlock`).
        "unlock",
        "u&",
    ];
    let lower = text.to_ascii_lowercase();
    WORDS.iter().any(|w| lower.contains(w))
        || (policy.is_untrusted() && crate::policy::pg::might_be_refused(&lower))
        // Any statement may need a capability the revision lacks.
        || policy.allowed().is_some()
}

/// [`parse`] of a script parsed whole.
///
/// Both readings are parsed only when they can differ. Without a backslash in the text
/// (every escape of the other reading begins with one), the other reading splits and
/// parses the script as the standard one does, or fails where the standard one fails too
/// (it also refuses `U&''` strings): its verdicts would be the standard one's. Under a
/// policy that checks more than transaction control the reading is passed on to the
/// rules (a PL/pgSQL body read the other way is rewritten from its tree), so both are
/// parsed whatever the text.
fn parse_whole<'a>(script: &'a str, policy: &Policy) -> Result<Vec<Parsed<'a>>, SqlError> {
    if !policy.checks_more() && !script.contains('\\') {
        return pg_query::parse(script, ParserOptions::DEFAULT)
            .map_err(syntax_error)
            .and_then(|on| statements(script, &on.protobuf, policy, true));
    }
    parse_both(script, policy)
}

/// [`parse_whole`] under both readings of a backslash.
fn parse_both<'a>(script: &'a str, policy: &Policy) -> Result<Vec<Parsed<'a>>, SqlError> {
    // The same bytes read with backslashes as escapes, when they parse that way.
    let other = match pg_query::parse(script, ParserOptions::DISABLE_STANDARD_CONFORMING_STRINGS) {
        Ok(off) => Some(statements(script, &off.protobuf, policy, false)?),
        Err(_) => None,
    };
    let refused_there = other
        .as_ref()
        .and_then(|all| all.iter().position(|s| s.refused.is_some()));
    let on = match pg_query::parse(script, ParserOptions::DEFAULT) {
        Ok(on) => on,
        // Unreadable as standard SQL: the other reading, if it has something to refuse
        // (what the text is for), else the parser's error.
        Err(e) => {
            return match (other, refused_there) {
                (Some(other), Some(_)) => Ok(other),
                _ => Err(syntax_error(e)),
            };
        }
    };
    let mut found = statements(script, &on.protobuf, policy, true)?;
    if found.iter().all(|s| s.refused.is_none())
        && let (Some(mut other), Some(n)) = (other, refused_there)
    {
        // Named at its place in the other reading's count (the nearest statement here).
        let refused = other.swap_remove(n).refused;
        match found.len().checked_sub(1) {
            Some(last) => found[n.min(last)].refused = refused,
            None => found.push(Parsed {
                text: script,
                refused,
            }),
        }
    }
    Ok(found)
}

/// The first refused statement of a script (its index and why), or `None`.
pub(crate) type Verdict = Option<(usize, Refusal)>;

/// The refusal for one statement a guest sends (`execute`, `query`, a cursor), cached by
/// its text and policy: a migration sends the same statement many times, and parsing costs
/// more than a lookup. `Ok(None)` when it may run.
///
/// # Errors
/// As [`parse`].
pub(crate) fn judge(sql: &str, policy: &Policy) -> Result<Verdict, SqlError> {
    /// Statements remembered; past it the cache starts over.
    const CACHED: usize = 512;
    /// Longer statements are not remembered (each is parsed when sent).
    const CACHED_LEN: usize = 4096;
    /// One map per policy (by what a verdict depends on): a verdict of one policy says
    /// nothing of another.
    type Verdicts = HashMap<PolicyKey, HashMap<String, Verdict>>;
    static CACHE: OnceLock<Mutex<Verdicts>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = policy.key();
    if sql.len() <= CACHED_LEN
        && let Some(hit) = cache
            .lock()
            .expect("not poisoned")
            .get(&key)
            .and_then(|verdicts| verdicts.get(sql))
    {
        return Ok(hit.clone());
    }
    let verdict = parse(sql, policy)?
        .into_iter()
        .enumerate()
        .find_map(|(n, s)| s.refused.map(|r| (n, r)));
    if sql.len() <= CACHED_LEN {
        let mut cache = cache.lock().expect("not poisoned");
        let verdicts = cache.entry(key).or_default();
        if verdicts.len() >= CACHED {
            verdicts.clear();
        }
        verdicts.insert(sql.to_owned(), verdict.clone());
    }
    Ok(verdict)
}

/// The statements of one parse (`standard`: with backslashes read the standard way), with
/// their refusals.
fn statements<'a>(
    script: &'a str,
    parsed: &pg_query::protobuf::ParseResult,
    policy: &Policy,
    standard: bool,
) -> Result<Vec<Parsed<'a>>, SqlError> {
    let mut out = Vec::with_capacity(parsed.stmts.len());
    for raw in &parsed.stmts {
        let start = usize::try_from(raw.stmt_location).unwrap_or(0);
        // A length of 0 means "to the end of the string".
        let end = match usize::try_from(raw.stmt_len) {
            Ok(0) | Err(_) => script.len(),
            Ok(len) => start + len,
        };
        let text = script.get(start..end).ok_or_else(|| {
            SqlError::wasmig(
                "STATE",
                "PostgreSQL's parser split the script inside a character".to_owned(),
            )
        })?;
        let refused = raw
            .stmt
            .as_ref()
            .and_then(|node| node.node.as_ref())
            .and_then(|node| {
                let policy_refusal = || {
                    policy
                        .checks_more()
                        .then(|| crate::policy::pg::violation(node, text, standard, policy))
                        .flatten()
                        .map(Refusal::Policy)
                };
                match refusal(node, text) {
                    // The policy first: wasmig's own `copy-in` passes this refusal only.
                    Some(copy @ Refusal::ClientCopy(_)) => policy_refusal().or(Some(copy)),
                    Some(other) => Some(other),
                    None => policy_refusal(),
                }
            });
        out.push(Parsed { text, refused });
    }
    Ok(out)
}

/// Why one parsed statement (`text`) may not run in a migration.
fn refusal(node: &NodeEnum, text: &str) -> Option<Refusal> {
    match node {
        // Named as written (`END`, `ABORT`), else by what the parser made of it.
        NodeEnum::TransactionStmt(t) => Some(Refusal::Control(
            crate::tx_control::keyword_of(text)
                .unwrap_or(match t.kind() {
                    TransactionStmtKind::TransStmtBegin | TransactionStmtKind::Undefined => "BEGIN",
                    TransactionStmtKind::TransStmtStart => "START TRANSACTION",
                    TransactionStmtKind::TransStmtCommit => "COMMIT",
                    TransactionStmtKind::TransStmtRollback => "ROLLBACK",
                    TransactionStmtKind::TransStmtSavepoint => "SAVEPOINT",
                    TransactionStmtKind::TransStmtRelease => "RELEASE",
                    TransactionStmtKind::TransStmtRollbackTo => "ROLLBACK TO",
                    TransactionStmtKind::TransStmtPrepare => "PREPARE TRANSACTION",
                    TransactionStmtKind::TransStmtCommitPrepared => "COMMIT PREPARED",
                    TransactionStmtKind::TransStmtRollbackPrepared => "ROLLBACK PREPARED",
                })
                .to_owned(),
        )),
        NodeEnum::VariableSetStmt(v) if v.kind() == VariableSetKind::VarResetAll => {
            Some(Refusal::Lexing("RESET ALL".to_owned()))
        }
        NodeEnum::VariableSetStmt(v) if is_lexing(&v.name) => Some(Refusal::Lexing(format!(
            "{} {}",
            if v.kind() == VariableSetKind::VarReset {
                "RESET"
            } else {
                "SET"
            },
            v.name
        ))),
        NodeEnum::CopyStmt(c) if c.filename.is_empty() && !c.is_program => {
            Some(Refusal::ClientCopy(if c.is_from {
                "COPY ... FROM STDIN"
            } else {
                "COPY ... TO STDOUT"
            }))
        }
        NodeEnum::DiscardStmt(d) if d.target() == DiscardMode::DiscardAll => {
            Some(Refusal::Lexing("DISCARD ALL".to_owned()))
        }
        other => refused_call(other),
    }
}

/// The functions that can release the shared session-level advisory lock wasmig holds on a
/// `transaction = "none"` script's session (`pg_advisory_unlock`, of exclusive locks,
/// cannot).
const UNLOCKS: [&str; 2] = ["pg_advisory_unlock_shared", "pg_advisory_unlock_all"];

/// A refused call anywhere in a statement, found in one walk of its tree: an advisory
/// unlock function (a migration could release the lock that tells a later run its statement
/// is still at work), or `set_config('standard_conforming_strings' | 'client_encoding', …)`
/// with its setting named by a constant.
fn refused_call(node: &NodeEnum) -> Option<Refusal> {
    node.nodes().into_iter().find_map(|(n, ..)| {
        let NodeRef::FuncCall(call) = n else {
            return None;
        };
        let name = call.funcname.last().and_then(|part| match &part.node {
            Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
            _ => None,
        })?;
        if let Some(unlock) = UNLOCKS.iter().find(|u| u.eq_ignore_ascii_case(name)) {
            return Some(Refusal::Unlock(format!("{unlock}()")));
        }
        if !name.eq_ignore_ascii_case("set_config") {
            return None;
        }
        let setting = call.args.first().and_then(|arg| match &arg.node {
            Some(NodeEnum::AConst(c)) => match &c.val {
                Some(a_const::Val::Sval(s)) => Some(s.sval.as_str()),
                _ => None,
            },
            _ => None,
        })?;
        is_lexing(setting).then(|| Refusal::Lexing(format!("set_config('{setting}', …)")))
    })
}

fn is_lexing(name: &str) -> bool {
    LEXING_SETTINGS
        .iter()
        .any(|s| s.eq_ignore_ascii_case(name.trim()))
}

/// A script the parser cannot read, as the server reports a syntax error.
fn syntax_error(e: pg_query::Error) -> SqlError {
    let message = match e {
        pg_query::Error::Parse(m) | pg_query::Error::Split(m) => m,
        other => other.to_string(),
    };
    SqlError {
        code: "42601".to_owned(),
        message: format!("{message} (PostgreSQL's parser, before anything ran)"),
        detail: None,
        hint: None,
        constraint: None,
        table: None,
        column: None,
    }
}

/// Whether every statement of `script` only reads or writes rows: `SELECT` (without
/// `INTO`, which creates a table), `INSERT`, `UPDATE`, `DELETE`, `MERGE`, `SET` and `LOCK`.
/// Anything else (DDL, `DO`, `CALL`, `COPY`…), or text the parser cannot read, says no. A
/// large script is split first and each statement parsed alone, as [`parse`] does.
pub(crate) fn only_data(script: &str) -> bool {
    let data = |text: &str| {
        pg_query::parse(text, ParserOptions::DEFAULT).is_ok_and(|parsed| {
            parsed.protobuf.stmts.iter().all(|raw| {
                matches!(
                    raw.stmt.as_ref().and_then(|n| n.node.as_ref()),
                    Some(
                        NodeEnum::InsertStmt(_)
                            | NodeEnum::UpdateStmt(_)
                            | NodeEnum::DeleteStmt(_)
                            | NodeEnum::MergeStmt(_)
                            | NodeEnum::VariableSetStmt(_)
                            | NodeEnum::LockStmt(_)
                    )
                ) || matches!(
                    raw.stmt.as_ref().and_then(|n| n.node.as_ref()),
                    Some(NodeEnum::SelectStmt(select)) if select.into_clause.is_none()
                )
            })
        })
    };
    if !split_first(script) {
        return data(script);
    }
    // A piece that does not parse alone (a `;` inside a body) says no: such a script
    // holds a function or a rule, not only data.
    pg_query::split_with_scanner(script).is_ok_and(|pieces| pieces.into_iter().all(data))
}

/// Whether `sql` (one statement) builds an index concurrently (`CREATE INDEX
/// CONCURRENTLY`, `REINDEX ... CONCURRENTLY`), which leaves an invalid index behind when
/// it fails. Text the parser cannot read says no.
pub(crate) fn builds_index_concurrently(sql: &str) -> bool {
    pg_query::parse(sql, ParserOptions::DEFAULT).is_ok_and(|parsed| {
        parsed.protobuf.stmts.iter().any(|raw| {
            match raw.stmt.as_ref().and_then(|n| n.node.as_ref()) {
                Some(NodeEnum::IndexStmt(index)) => index.concurrent,
                Some(NodeEnum::ReindexStmt(reindex)) => reindex.params.iter().any(|p| {
                    matches!(&p.node, Some(NodeEnum::DefElem(d)) if d.defname == "concurrently")
                }),
                _ => false,
            }
        })
    })
}

/// Whether every statement of `sql` only reads, surely: a `SELECT` (or `VALUES`) without
/// `INTO`, locking clause, a `WITH` query that writes, or any function call (a function may
/// write, set a setting or move a sequence). `false` for anything else, or text the parser
/// cannot read.
pub(crate) fn reads_only(sql: &str) -> bool {
    fn select_reads(select: &pg_query::protobuf::SelectStmt) -> bool {
        select.into_clause.is_none()
            && select.locking_clause.is_empty()
            && select.with_clause.as_ref().is_none_or(|with| {
                with.ctes.iter().all(|cte| match cte.node.as_ref() {
                    Some(NodeEnum::CommonTableExpr(cte)) => matches!(
                        cte.ctequery.as_ref().and_then(|q| q.node.as_ref()),
                        Some(NodeEnum::SelectStmt(inner)) if select_reads(inner)
                    ),
                    _ => false,
                })
            })
            && select.larg.as_ref().is_none_or(|l| select_reads(l))
            && select.rarg.as_ref().is_none_or(|r| select_reads(r))
    }
    pg_query::parse(sql, ParserOptions::DEFAULT).is_ok_and(|parsed| {
        // A function may write, set a setting or move a sequence: not surely a read.
        let calls = parsed
            .protobuf
            .nodes()
            .iter()
            .any(|(node, _, _, _)| matches!(node, NodeRef::FuncCall(_)));
        !calls
            && !parsed.protobuf.stmts.is_empty()
            && parsed.protobuf.stmts.iter().all(|raw| {
                matches!(
                    raw.stmt.as_ref().and_then(|n| n.node.as_ref()),
                    Some(NodeEnum::SelectStmt(select)) if select_reads(select)
                )
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_without_a_backslash_is_judged_as_under_both_readings() {
        for sql in [
            "CREATE TABLE t (id int); INSERT INTO t VALUES (1)",
            "SELECT 'it''s'; COMMIT",
            "CREATE TABLE a (x text); BEGIN; END",
            "SELECT U&'d0061t' AS u; ROLLBACK",
            "SELECT U&'d0061t' AS u",
            "SELECT E'no escape here'; SAVEPOINT s",
            "DO $$ BEGIN COMMIT; END $$",
            "SELECT pg_advisory_unlock_all()",
            "SET standard_conforming_strings = off",
            "SELECT 1; SELEC 2",
            "SELECT 'open",
            "",
            "-- only a comment",
        ] {
            assert!(!sql.contains('\\'));
            let one = parse_whole(sql, &Policy::TRUSTED).map_err(|e| (e.code, e.message));
            let both = parse_both(sql, &Policy::TRUSTED).map_err(|e| (e.code, e.message));
            assert_eq!(one, both, "{sql}");
        }
    }

    fn refused(sql: &str) -> Vec<Option<Refusal>> {
        parse(sql, &Policy::TRUSTED)
            .unwrap()
            .into_iter()
            .map(|s| s.refused)
            .collect()
    }

    #[test]
    fn reads_only_is_selects_that_write_nothing() {
        for read in [
            "SELECT id, email FROM people WHERE id > $1 ORDER BY id LIMIT $2",
            "WITH a AS (SELECT 1) SELECT * FROM a UNION SELECT 2",
            "VALUES (1)",
        ] {
            assert!(reads_only(read), "{read}");
        }
        for write in [
            "SELECT set_config('search_path', 'x', false)",
            "SELECT nextval('s')",
            "SELECT count(*) FROM t",
            "UPDATE t SET x = 1 RETURNING x",
            "WITH gone AS (DELETE FROM t RETURNING *) SELECT count(*) FROM gone",
            "SELECT * FROM (SELECT 1) a UNION (WITH w AS (DELETE FROM t RETURNING 1) SELECT * FROM w)",
            "SELECT * INTO u FROM t",
            "SELECT * FROM t FOR UPDATE",
            "SELECT 1; DELETE FROM t",
            "",
        ] {
            assert!(!reads_only(write), "{write}");
        }
    }

    #[test]
    fn only_data_is_rows_read_and_written() {
        for data in [
            "INSERT INTO t VALUES (1); UPDATE t SET x = 2; DELETE FROM t",
            "SET LOCAL lock_timeout = '1s'; LOCK TABLE t; SELECT 1",
            "WITH moved AS (DELETE FROM a RETURNING *) INSERT INTO b SELECT * FROM moved",
            "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET x = s.x",
            "VALUES (1)",
            "-- only a comment\n",
        ] {
            assert!(only_data(data), "{data}");
        }
        for ddl in [
            "INSERT INTO t VALUES (1); CREATE TABLE u (x int)",
            "SELECT * INTO u FROM t",
            "CREATE TABLE u AS SELECT 1",
            "DO $$ BEGIN CREATE TABLE u (x int); END $$",
            "CALL p()",
            "ALTER TABLE t ADD COLUMN y int",
            "TRUNCATE t",
            "CREATE INDEX CONCURRENTLY i ON t (x)",
            "not sql at all",
        ] {
            assert!(!only_data(ddl), "{ddl}");
        }
        // A large script is split first, with the same answers.
        let rows = "INSERT INTO t VALUES (1);\n".repeat(WHOLE / 20);
        assert!(split_first(&rows));
        assert!(only_data(&rows));
        assert!(!only_data(&format!("{rows}CREATE TABLE u (x int);")));
    }

    #[test]
    fn splits_where_the_server_does() {
        let sql = "CREATE FUNCTION begin() RETURNS int LANGUAGE sql AS 'select 1';
                   CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END;
                   SELECT 'a;b' -- ; comment
                   ;";
        let texts: Vec<&str> = parse(sql, &Policy::TRUSTED)
            .unwrap()
            .iter()
            .map(|s| s.text.trim())
            .collect();
        assert_eq!(texts.len(), 3, "{texts:?}");
        assert!(texts[1].ends_with("END"), "{texts:?}");
        assert_eq!(refused(sql), [None, None, None]);
    }

    #[test]
    fn transaction_control_is_refused_however_it_is_spelled() {
        for sql in [
            "COMMIT",
            "commit work",
            "END",
            "ABORT",
            "/* x */ BEGIN",
            "START TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "SAVEPOINT s",
            "RELEASE s",
            "ROLLBACK TO s",
            "PREPARE TRANSACTION 'x'",
            "COMMIT PREPARED 'x'",
            "SELECT 1; COMMIT",
        ] {
            assert!(
                refused(sql)
                    .iter()
                    .any(|r| matches!(r, Some(Refusal::Control(_)))),
                "{sql}"
            );
        }
    }

    #[test]
    fn a_statement_hidden_by_either_reading_of_backslashes_is_refused() {
        // With backslashes as escapes the literal ends at the second quote, and COMMIT is
        // a statement; read as the server reads it with the setting on, it is text.
        let sql = r"SELECT 'a\'; COMMIT; SELECT ''";
        let on = parse(sql, &Policy::TRUSTED).unwrap();
        assert!(on.iter().any(|s| s.refused.is_some()), "{on:?}");
        // And the other way round: text under the escaping reading, a statement otherwise.
        let sql = r"SELECT E'\''; SELECT 'x\'; COMMIT; --'";
        assert!(
            parse(sql, &Policy::TRUSTED)
                .unwrap()
                .iter()
                .any(|s| s.refused.is_some())
        );
    }

    #[test]
    fn changing_how_the_server_reads_sql_is_refused() {
        for sql in [
            "SET standard_conforming_strings = off",
            "SET LOCAL standard_conforming_strings TO off",
            "set STANDARD_CONFORMING_STRINGS = 'off'",
            "RESET standard_conforming_strings",
            "SET client_encoding = 'SJIS'",
            "SET NAMES 'SJIS'",
            "RESET ALL",
            "DISCARD ALL",
            "SELECT set_config('standard_conforming_strings', 'off', false)",
            "SELECT pg_catalog.set_config('client_encoding', 'SJIS', true)",
            "SELECT 1 WHERE (SELECT set_config('standard_conforming_strings', 'off', false)) IS NULL",
        ] {
            assert!(
                refused(sql)
                    .iter()
                    .any(|r| matches!(r, Some(Refusal::Lexing(_)))),
                "{sql}"
            );
        }
        for sql in [
            "SET search_path = a",
            "SELECT set_config('x.y', 'z', true)",
            "DISCARD TEMP",
        ] {
            assert_eq!(refused(sql), [None], "{sql}");
        }
    }

    #[test]
    fn a_script_the_parser_cannot_read_is_a_syntax_error() {
        let e = parse("SELEC 1", &Policy::TRUSTED).unwrap_err();
        assert_eq!(e.code, "42601");
        assert!(e.message.contains("syntax error"), "{}", e.message);
    }

    #[test]
    fn a_large_script_is_judged_a_statement_at_a_time_as_a_whole_one_is() {
        let mut script = String::new();
        for i in 0..20_000 {
            script.push_str(&format!("INSERT INTO t VALUES ({i}, 'row {i}');\n"));
        }
        script.push_str(
            "CREATE FUNCTION g() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;
             CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); NOTIFY a);
             SELECT 'end; commit' AS \"begin\";\n",
        );
        assert!(script.len() > WHOLE);
        let parsed = parse(&script, &Policy::TRUSTED).unwrap();
        assert_eq!(parsed.len(), 20_003);
        assert!(parsed.iter().all(|s| s.refused.is_none()));
        assert!(
            parsed[20_000].text.trim_end().ends_with("END"),
            "{:?}",
            parsed[20_000]
        );
        // Refused wherever it is, under either reading, and named at its place.
        let hidden = format!("{script}SELECT 'a\\' , '; COMMIT; SELECT ' --'\n");
        assert!(
            parse(&hidden, &Policy::TRUSTED)
                .unwrap()
                .iter()
                .any(|s| s.refused.is_some())
        );
        let plain = format!("{script}COMMIT;\nSELECT 1;");
        let parsed = parse(&plain, &Policy::TRUSTED).unwrap();
        assert_eq!(
            parsed.iter().position(|s| s.refused.is_some()),
            Some(20_003)
        );
        // A statement that never ends is the parser's error, as for a whole script.
        let broken = format!("{script}SELECT 'unterminated");
        assert_eq!(parse(&broken, &Policy::TRUSTED).unwrap_err().code, "42601");
    }

    #[test]
    fn judging_is_cached_and_says_which_statement() {
        assert_eq!(judge("SELECT 1", &Policy::TRUSTED).unwrap(), None);
        assert_eq!(
            judge("SELECT 1; ROLLBACK", &Policy::TRUSTED).unwrap(),
            Some((1, Refusal::Control("ROLLBACK".to_owned())))
        );
        assert_eq!(
            judge("SELECT 1; ROLLBACK", &Policy::TRUSTED).unwrap(),
            Some((1, Refusal::Control("ROLLBACK".to_owned())))
        );
    }

    #[test]
    fn releasing_wasmigs_session_lock_is_refused_however_it_is_spelled() {
        for sql in [
            "SELECT pg_advisory_unlock_all()",
            "SELECT pg_catalog.PG_ADVISORY_UNLOCK_ALL()",
            "SELECT 1 WHERE pg_advisory_unlock_shared(42)",
            "SELECT x FROM t WHERE (SELECT \"pg_advisory_unlock_all\"()) IS NULL",
            "CREATE TABLE t AS SELECT pg_advisory_unlock_shared(1) AS x",
        ] {
            let parsed = parse(sql, &Policy::TRUSTED).unwrap();
            assert!(
                parsed
                    .iter()
                    .any(|p| matches!(p.refused, Some(Refusal::Unlock(_)))),
                "{sql}"
            );
        }
        // A migration's own exclusive session lock may be released.
        let parsed = parse("SELECT pg_advisory_unlock(42)", &Policy::TRUSTED).unwrap();
        assert!(parsed.iter().all(|p| p.refused.is_none()));
    }

    #[test]
    fn an_unlock_call_in_a_script_split_first_is_refused_too() {
        // Past the size parsed whole, statements without a refused statement's words go
        // unparsed: the unlock functions' names are among those words.
        let mut sql = "SELECT 1;\n".repeat(30_000);
        assert!(split_first(&sql));
        sql.push_str("SELECT pg_advisory_unlock_all();\nSELECT 2;\n");
        let parsed = parse(&sql, &Policy::TRUSTED).unwrap();
        let refused = parsed
            .iter()
            .position(|p| matches!(p.refused, Some(Refusal::Unlock(_))));
        assert_eq!(refused, Some(30_000));
    }
}

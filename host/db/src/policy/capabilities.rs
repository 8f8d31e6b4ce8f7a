//! Which capabilities a statement needs (`read`, `write`, `ddl`, `grant`: the vocabulary is
//! `wasmig_plan::capability`'s), read from PostgreSQL's parse tree, or from SQLite's
//! keywords, and the refusal of one the revision may not use.
//!
//! A statement needs what its kind does (see [`kind`]), plus a `write` for every
//! data-modifying statement inside it (a `WITH` of `INSERT`, a rule's action). A `DO`
//! block needs what the statements of its body need, and a `CREATE FUNCTION` needs `ddl`
//! with what its body's statements need (the body runs later, when called: a function
//! that writes is a way to write). A PL/pgSQL `EXECUTE` of a constant string needs what
//! that string's statements need; of SQL built at run time, or a body the parser cannot
//! read, every capability.
//!
//! What the tree cannot show: what a function called by name does (a `SELECT f()` is a
//! read, whatever `f` does; `setval` excepted, a write), and what a trigger does when a
//! write fires it. The database role is the backstop (`role` in `wasmig.toml`).
//!
//! Not here: the vocabulary and its parsing (`wasmig_plan`), the message (`policy`).

use pg_query::NodeEnum;
use pg_query::protobuf::AlterTableType;
use serde_json::Value;
use wasmig_plan::{Capabilities, Capability};

use super::pg::{dynamic_sql, expression_sql, plpgsql_body, shortened};
use super::{Rule, Violation};

/// How deeply bodies are read before a statement counts as needing everything.
const MAX_DEPTH: u8 = 8;

/// What a statement needs, and for each capability the first statement that needs it
/// ("DROP TABLE", "INSERT (in a DO block)"), for the message.
#[derive(Debug, Default)]
struct Needs {
    set: Capabilities,
    why: Vec<(Capability, String)>,
}

impl Needs {
    fn add(&mut self, capabilities: Capabilities, what: &str) {
        for c in capabilities.iter() {
            if !self.set.has(c) {
                self.set = self.set.with(c);
                self.why.push((c, what.to_owned()));
            }
        }
    }

    fn merge(&mut self, inner: Needs, place: &str) {
        for (c, what) in inner.why {
            if !self.set.has(c) {
                self.set = self.set.with(c);
                let what = if place.is_empty() {
                    what
                } else {
                    format!("{what} ({place})")
                };
                self.why.push((c, what));
            }
        }
    }
}

/// The first capability outside `allowed` that PostgreSQL's statement `node` (parsed from
/// `text`, backslashes read the standard way when `standard`) needs, as a violation.
pub(crate) fn missing(
    node: &NodeEnum,
    text: &str,
    standard: bool,
    allowed: Capabilities,
) -> Option<Violation> {
    let needs = statement(node, text, standard, 0);
    refusal(needs, allowed)
}

/// The first capability outside `allowed` that SQLite's statement `text` (whose first
/// words, uppercased, are `lead`) needs. Lexical, as SQLite's whole check is.
pub(crate) fn missing_sqlite(
    text: &str,
    lead: &[String],
    allowed: Capabilities,
) -> Option<Violation> {
    let lower = text.to_ascii_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect();
    let has = |w: &str| words.contains(&w);
    let modifies = has("insert") || has("update") || has("delete") || has("replace");
    let first = lead.first().map(String::as_str).unwrap_or_default();
    let mut set = match first {
        "SELECT" | "VALUES" | "WITH" if has("from") => Capabilities::of(Capability::Read),
        "SELECT" | "VALUES" | "WITH" | "EXPLAIN" => Capabilities::NONE,
        "INSERT" | "REPLACE" | "UPDATE" | "DELETE" => Capabilities::of(Capability::Write),
        "PRAGMA" if !text.contains('=') && !text.contains('(') => Capabilities::NONE,
        _ => Capabilities::of(Capability::Ddl),
    };
    if first == "WITH" && modifies || first == "CREATE" && has("trigger") && modifies {
        set = set.with(Capability::Write);
    }
    let mut needs = Needs::default();
    needs.add(set, &tag_of(lead));
    refusal(needs, allowed)
}

fn refusal(needs: Needs, allowed: Capabilities) -> Option<Violation> {
    needs
        .why
        .into_iter()
        .find(|(c, _)| !allowed.has(*c))
        .map(|(c, what)| Violation::new(Rule::Capability(c), what))
}

/// What one statement needs, its bodies' statements included.
fn statement(node: &NodeEnum, text: &str, standard: bool, depth: u8) -> Needs {
    let what = tag(text);
    let mut needs = Needs::default();
    let Ok(tree) = serde_json::to_value(node) else {
        needs.add(Capabilities::ALL, &what);
        return needs;
    };
    let Some((key, n)) = tree.as_object().and_then(|m| m.iter().next()) else {
        needs.add(Capabilities::ALL, &what);
        return needs;
    };
    needs.add(kind(key, n), &what);
    if modifies_inside(n) {
        needs.add(Capabilities::of(Capability::Write), &what);
    }
    if depth > MAX_DEPTH {
        needs.add(
            Capabilities::ALL,
            &format!("{what} (nested too deep to read)"),
        );
        return needs;
    }
    match plpgsql_body(node, &tree, text, standard) {
        None if key == "CreateFunctionStmt" => {
            // A LANGUAGE sql function: its text bodies (a BEGIN ATOMIC body is in the tree,
            // and reads count like a SELECT's).
            if contains(n, &["RangeVar", "RangeFunction"]) {
                needs.add(Capabilities::of(Capability::Read), &what);
            }
            let mut bodies = Vec::new();
            super::pg::options(&n["options"])
                .filter(|(name, _)| *name == "as")
                .for_each(|(_, arg)| super::pg::all_strings(arg, &mut bodies));
            let is_sql = super::pg::language(&n["options"], "sql") == "sql";
            for body in bodies.into_iter().filter(|_| is_sql) {
                needs.merge(sql(body, depth + 1), "in the body of a function");
            }
        }
        None => {}
        Some(Ok((source, place))) => match pg_query::parse_plpgsql(&source) {
            Ok(functions) => {
                let mut inner = Needs::default();
                plpgsql(&functions, depth + 1, &mut inner);
                needs.merge(inner, place);
            }
            Err(_) => needs.add(
                Capabilities::ALL,
                &format!("{what} (a body the parser cannot read)"),
            ),
        },
        Some(Err(_)) => needs.add(
            Capabilities::ALL,
            &format!("{what} (a body the parser cannot read)"),
        ),
    }
    needs
}

/// What the statements of `sql` (a body, a string a body executes) need; SQL the parser
/// cannot read needs everything.
fn sql(sql: &str, depth: u8) -> Needs {
    let mut needs = Needs::default();
    let Ok(parsed) = pg_query::parse(sql, pg_query::ParserOptions::DEFAULT) else {
        needs.add(
            Capabilities::ALL,
            &format!("SQL the parser cannot read ({})", shortened(sql)),
        );
        return needs;
    };
    for raw in &parsed.protobuf.stmts {
        let Some(node) = raw.stmt.as_ref().and_then(|n| n.node.as_ref()) else {
            continue;
        };
        let start = usize::try_from(raw.stmt_location).unwrap_or(0);
        let end = match usize::try_from(raw.stmt_len) {
            Ok(0) | Err(_) => sql.len(),
            Ok(len) => start + len,
        };
        let text = sql.get(start..end).unwrap_or(sql);
        needs.merge(statement(node, text, true, depth), "");
    }
    needs
}

/// Every expression and statement of PL/pgSQL functions (`pg_query::parse_plpgsql`'s JSON).
fn plpgsql(v: &Value, depth: u8, needs: &mut Needs) {
    match v {
        Value::Object(map) => {
            for (key, value) in map {
                match key.as_str() {
                    "PLpgSQL_expr" => match expression_sql(value) {
                        Ok(text) => needs.merge(sql(&text, depth), ""),
                        Err(what) => needs.add(Capabilities::ALL, &what),
                    },
                    "PLpgSQL_stmt_dynexecute" | "PLpgSQL_stmt_dynfors" => {
                        dynamic(&value["query"], depth, needs);
                    }
                    "PLpgSQL_stmt_open" | "PLpgSQL_stmt_return_query" => {
                        if let Some(d) = value.get("dynquery").filter(|d| !d.is_null()) {
                            dynamic(d, depth, needs);
                        }
                    }
                    _ => {}
                }
                plpgsql(value, depth, needs);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| plpgsql(item, depth, needs)),
        _ => {}
    }
}

/// A dynamic query: a constant string needs what its statements need; SQL built at run
/// time, everything.
fn dynamic(d: &Value, depth: u8, needs: &mut Needs) {
    match dynamic_sql(d) {
        Ok(text) => needs.merge(sql(&text, depth + 1), "in a string EXECUTE runs"),
        Err(query) => needs.add(
            Capabilities::ALL,
            &format!(
                "EXECUTE of SQL built at run time ({}), which may do anything,",
                shortened(&query)
            ),
        ),
    }
}

/// What a statement of the kind `key` (its node's tag; `n` its fields) needs by itself.
fn kind(key: &str, n: &Value) -> Capabilities {
    let only = Capabilities::of;
    match key {
        "SelectStmt" => {
            if n["into_clause"].is_object() {
                only(Capability::Ddl).with(Capability::Write)
            } else if contains(n, &["locking_clause"]) {
                only(Capability::Write)
            } else {
                query(n)
            }
        }
        "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" | "TruncateStmt" | "CallStmt"
        | "NotifyStmt" => only(Capability::Write),
        "CopyStmt" if n["is_from"].as_bool() == Some(true) => only(Capability::Write),
        "CopyStmt" => only(Capability::Read),
        // PostgreSQL's own rule: ACCESS SHARE needs SELECT, the other modes a write right.
        "LockStmt" if n["mode"].as_i64() == Some(ACCESS_SHARE_LOCK) => only(Capability::Read),
        "LockStmt" => only(Capability::Write),
        // What they run: EXPLAIN (ANALYZE runs it), a prepared statement, a cursor.
        "ExplainStmt" | "PrepareStmt" | "DeclareCursorStmt" => n["query"]["node"]
            .as_object()
            .and_then(|m| m.iter().next())
            .map_or(Capabilities::NONE, |(k, v)| kind(k, v)),
        // Only the session: settings (`SET LOCAL`), `SHOW`, cursors, prepared statements,
        // listening. (wasmig resets a session's state before the next step.)
        "VariableSetStmt" | "VariableShowStmt" | "ConstraintsSetStmt" | "DiscardStmt"
        | "ListenStmt" | "UnlistenStmt" | "FetchStmt" | "ClosePortalStmt" | "ExecuteStmt"
        | "DeallocateStmt" | "TransactionStmt" | "DoStmt" => Capabilities::NONE,
        "GrantStmt"
        | "GrantRoleStmt"
        | "AlterDefaultPrivilegesStmt"
        | "AlterOwnerStmt"
        | "ReassignOwnedStmt"
        | "DropOwnedStmt"
        | "CreateRoleStmt"
        | "AlterRoleStmt"
        | "AlterRoleSetStmt"
        | "DropRoleStmt" => only(Capability::Grant),
        "AlterTableStmt" => {
            let cmds = n["cmds"].as_array().map(Vec::as_slice).unwrap_or_default();
            let owner = |c: &Value| {
                c["node"]["AlterTableCmd"]["subtype"].as_i64()
                    == Some(AlterTableType::AtChangeOwner as i64)
            };
            let mut set = Capabilities::NONE;
            if cmds.iter().any(owner) {
                set = set.with(Capability::Grant);
            }
            if cmds.iter().any(|c| !owner(c)) {
                set = set.with(Capability::Ddl);
            }
            set
        }
        // Everything else defines or maintains objects: CREATE, ALTER, DROP, COMMENT ON,
        // CREATE INDEX (CONCURRENTLY too), ANALYZE, VACUUM, CLUSTER, REINDEX, REFRESH
        // MATERIALIZED VIEW… and what wasmig does not know.
        _ => only(Capability::Ddl),
    }
}

/// PostgreSQL's `AccessShareLock`, the mode of a `LOCK TABLE ... IN ACCESS SHARE MODE`.
const ACCESS_SHARE_LOCK: i64 = 1;

/// A query reads when it names a relation or a set-returning function; `SELECT 1`,
/// `SELECT now()` or `SELECT setval(…)` (a write) do not read.
fn query(n: &Value) -> Capabilities {
    let mut set = Capabilities::NONE;
    if contains(n, &["RangeVar", "RangeFunction"]) {
        set = set.with(Capability::Read);
    }
    if calls(n, "setval") {
        set = set.with(Capability::Write);
    }
    set
}

/// Whether a data-modifying statement is nested anywhere in `n` (a `WITH` of `INSERT`,
/// a rule's action, a function's `BEGIN ATOMIC` body).
fn modifies_inside(n: &Value) -> bool {
    contains(n, &["InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"])
}

/// Whether a key of `keys` occurs under `v` with a non-empty value.
fn contains(v: &Value, keys: &[&str]) -> bool {
    match v {
        Value::Object(map) => map.iter().any(|(k, value)| {
            (keys.contains(&k.as_str()) && !is_empty(value)) || contains(value, keys)
        }),
        Value::Array(items) => items.iter().any(|item| contains(item, keys)),
        _ => false,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

/// Whether a function called `name` (any schema, any case) is called under `v`.
fn calls(v: &Value, name: &str) -> bool {
    match v {
        Value::Object(map) => {
            let here = map.get("FuncCall").is_some_and(|f| {
                super::pg::strings(&f["funcname"])
                    .last()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            });
            here || map.values().any(|value| calls(value, name))
        }
        Value::Array(items) => items.iter().any(|item| calls(item, name)),
        _ => false,
    }
}

/// A statement's leading keywords, as a message names it: `DROP TABLE`, `INSERT`,
/// `CREATE UNIQUE INDEX`, `ALTER TABLE`.
fn tag(text: &str) -> String {
    let words: Vec<String> = match pg_query::scan(text) {
        Ok(scan) => scan
            .tokens
            .iter()
            .filter_map(|t| {
                let start = usize::try_from(t.start).ok()?;
                let end = usize::try_from(t.end).ok()?;
                text.get(start..end)
            })
            .filter(|w| !w.starts_with("--") && !w.starts_with("/*"))
            .take(6)
            .map(str::to_ascii_uppercase)
            .collect(),
        Err(_) => Vec::new(),
    };
    tag_of(&words)
}

/// The leading keywords of a statement whose first words (uppercased) are `words`.
fn tag_of(words: &[String]) -> String {
    const MODIFIERS: [&str; 17] = [
        "OR",
        "REPLACE",
        "UNIQUE",
        "TEMP",
        "TEMPORARY",
        "UNLOGGED",
        "MATERIALIZED",
        "FOREIGN",
        "EVENT",
        "CONSTRAINT",
        "DEFAULT",
        "RECURSIVE",
        "GLOBAL",
        "LOCAL",
        "TRUSTED",
        "PROCEDURAL",
        "VIRTUAL",
    ];
    let Some(first) = words.first() else {
        return "the statement".to_owned();
    };
    let mut out = vec![first.as_str()];
    if [
        "CREATE", "ALTER", "DROP", "COMMENT", "REFRESH", "SECURITY", "LOCK",
    ]
    .contains(&first.as_str())
    {
        for w in &words[1..] {
            out.push(w);
            if !MODIFIERS.contains(&w.as_str()) {
                break;
            }
        }
    }
    out.join(" ")
}

/// Everything a PostgreSQL script's statements need (the tests' view of [`missing`]).
#[cfg(test)]
pub(crate) fn needs_of(script: &str) -> Capabilities {
    sql(script, 0).set
}

//! The untrusted policy on PostgreSQL: one statement's tree, as PostgreSQL's parser made it
//! (`pg_parse` hands each statement here under both readings of backslashes), walked whole,
//! and the bodies the parser can read with it: a `LANGUAGE sql` function's text (its
//! `BEGIN ATOMIC` body is part of the tree), and the PL/pgSQL of functions and `DO` blocks,
//! read by PostgreSQL's own PL/pgSQL parser (`pg_query::parse_plpgsql`), every expression
//! and statement in it parsed and checked with the same rules. A PL/pgSQL `EXECUTE` of a
//! constant string is parsed and checked; of anything else, refused.
//!
//! The tree is walked as the JSON of pg_query's protobuf types (they derive `Serialize`):
//! every node, whatever the statement, and no list of node types to keep up to date (the
//! crate's own `nodes()` visits only some). Anything the policy cannot read is refused.
//!
//! Function names are matched whatever their schema (`pg_catalog.pg_read_file`,
//! `public.dblink`, a migration's own `x.lo_import`): an extension's functions live in any
//! schema, and a name resolves by the `search_path` when the statement runs, so the schema
//! written proves nothing. A function of one's own with such a name is refused too; renaming
//! it is the way out.
//!
//! Not here: the rules' names and messages (`policy`), splitting and transaction control
//! (`pg_parse`).

use pg_query::protobuf::{ObjectType, Token};
use pg_query::{NodeEnum, ParserOptions};
use serde_json::Value;

use super::{Policy, Rule, TRUSTED_EXTENSIONS, Violation};

/// How deeply bodies may nest (a `DO` block that `EXECUTE`s a constant that creates a
/// function…) before the policy stops reading and refuses.
const MAX_DEPTH: u8 = 8;

/// Settings `set_config` may not change in an untrusted migration.
const ROLE_SETTINGS: [&str; 2] = ["role", "session_authorization"];

/// Why `policy` refuses one statement: `node`, parsed from `text` with backslashes read
/// the standard way when `standard` (else as escapes). Untrusted, every rule; with a
/// `role` set, the switches of the role; with capabilities, what the statement needs.
pub(crate) fn violation(
    node: &NodeEnum,
    text: &str,
    standard: bool,
    policy: &Policy,
) -> Option<Violation> {
    let scope = if policy.is_untrusted() {
        Some(Scope::All)
    } else if policy.locks_role() {
        Some(Scope::RoleSwitches)
    } else {
        None
    };
    if let Some(scope) = scope
        && let Some(found) = statement(node, text, standard, Cx { depth: 0, scope })
    {
        return Some(found);
    }
    let allowed = policy.allowed()?;
    super::capabilities::missing(node, text, standard, allowed)
}

/// Which rules a walk reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Every rule: the untrusted policy.
    All,
    /// Only switches of the role (a trusted project with `role` set).
    RoleSwitches,
}

/// Where a walk is: how deep in bodies, and which rules it reports.
#[derive(Debug, Clone, Copy)]
struct Cx {
    depth: u8,
    scope: Scope,
}

impl Cx {
    fn deeper(self) -> Cx {
        Cx {
            depth: self.depth + 1,
            ..self
        }
    }

    /// `v` if this walk reports its rule.
    fn refuse(self, v: Violation) -> Option<Violation> {
        match self.scope {
            Scope::All => Some(v),
            Scope::RoleSwitches => {
                matches!(v.rule, Rule::RoleSwitch | Rule::ComputedSetting).then_some(v)
            }
        }
    }
}

/// Whether a statement (lowercased) holds a word every statement the policy refuses needs:
/// a large script's statements without one are not parsed (see `pg_parse`). Keywords
/// cannot be escaped and function names only as `U&"…"` identifiers.
pub(crate) fn might_be_refused(lower: &str) -> bool {
    const WORDS: [&str; 20] = [
        "copy",
        "crosstab",
        "connectby",
        "pg_",
        "lo_",
        "dblink",
        "_to_xml",
        "ts_stat",
        "ts_rewrite",
        "set",
        "alter",
        "load",
        "create",
        "drop",
        "grant",
        "revoke",
        "import",
        "do",
        "u&",
        "reset",
    ];
    WORDS.iter().any(|w| lower.contains(w))
}

fn statement(node: &NodeEnum, text: &str, standard: bool, cx: Cx) -> Option<Violation> {
    let tree = match serde_json::to_value(node) {
        Ok(tree) => tree,
        Err(e) => {
            return cx.refuse(Violation::new(
                Rule::HiddenSql,
                format!("wasmig could not examine the statement's tree ({e})"),
            ));
        }
    };
    if let Some(found) = walk(&tree, cx) {
        return Some(found);
    }
    match plpgsql_body(node, &tree, text, standard)? {
        Ok((source, what)) => match pg_query::parse_plpgsql(&source) {
            Ok(functions) => walk_plpgsql(&functions, cx.deeper()).map(|v| within(v, what)),
            Err(e) => cx.refuse(Violation::new(
                Rule::HiddenSql,
                format!("PL/pgSQL the parser cannot read ({e})"),
            )),
        },
        Err(e) => cx.refuse(Violation::new(
            Rule::HiddenSql,
            format!("a PL/pgSQL body wasmig could not read back ({e})"),
        )),
    }
}

/// The PL/pgSQL of a function or `DO` block (`node`, whose JSON is `tree`, parsed from
/// `text`), as PL/pgSQL's parser reads it, and where it is ("in a DO block"); `None` for
/// other statements and other languages. Always a statement of its own, never nested in
/// another (the grammar allows neither inside any other statement).
///
/// The text when it was read the standard way (as PL/pgSQL's parser reads it); the other
/// reading's tree written back as standard SQL; a trigger function's body apart.
pub(super) fn plpgsql_body(
    node: &NodeEnum,
    tree: &Value,
    text: &str,
    standard: bool,
) -> Option<Result<(String, &'static str), String>> {
    let (options, default, what) = match node {
        NodeEnum::CreateFunctionStmt(_) => (
            &tree["CreateFunctionStmt"]["options"],
            "sql",
            "in the body of a function",
        ),
        NodeEnum::DoStmt(_) => (&tree["DoStmt"]["args"], "plpgsql", "in a DO block"),
        _ => return None,
    };
    if language(options, default) != "plpgsql" {
        return None;
    }
    let source = if let Some(source) = trigger_function(tree) {
        source
    } else if standard {
        text.to_owned()
    } else {
        match node.deparse(Default::default()) {
            Ok(source) => source,
            Err(e) => return Some(Err(e.to_string())),
        }
    };
    Some(Ok((source, what)))
}

/// A trigger or event trigger function's body as a function PL/pgSQL's parser can read
/// (`None` for other statements): libpg_query 18.1 writes invalid JSON for trigger
/// functions, so the body is read as a function returning `record` that declares the
/// variables a trigger function has (`NEW`, `OLD`, `TG_OP`…), the body a block within.
fn trigger_function(tree: &Value) -> Option<String> {
    let function = &tree["CreateFunctionStmt"];
    let returns = strings(&function["return_type"]["names"]);
    if !returns.last().is_some_and(|t| {
        t.eq_ignore_ascii_case("trigger") || t.eq_ignore_ascii_case("event_trigger")
    }) {
        return None;
    }
    let mut bodies = Vec::new();
    options(&function["options"])
        .filter(|(name, _)| *name == "as")
        .for_each(|(_, arg)| all_strings(arg, &mut bodies));
    let body = bodies.first()?.trim().trim_end_matches(';');
    let tag = (0..)
        .map(|n| format!("$wasmig{n}$"))
        .find(|tag| !body.contains(tag.as_str()))?;
    Some(format!(
        "CREATE FUNCTION wasmig_trigger() RETURNS record LANGUAGE plpgsql AS {tag}
         DECLARE new record; old record; tg_name name; tg_when text; tg_level text;
         tg_op text; tg_relid oid; tg_relname name; tg_table_name name; tg_table_schema name;
         tg_nargs integer; tg_argv text[]; tg_event text; tg_tag text;
         BEGIN {body}; END {tag}"
    ))
}

/// Every statement of `sql` (a body, a string a body executes) checked under both readings
/// of backslashes; SQL neither reading can parse is refused.
fn text(sql: &str, cx: Cx) -> Option<Violation> {
    if cx.depth > MAX_DEPTH {
        return cx.refuse(Violation::new(
            Rule::HiddenSql,
            format!("SQL nested more than {MAX_DEPTH} bodies deep"),
        ));
    }
    let mut read = false;
    for (options, standard) in [
        (ParserOptions::DEFAULT, true),
        (ParserOptions::DISABLE_STANDARD_CONFORMING_STRINGS, false),
    ] {
        let Ok(parsed) = pg_query::parse(sql, options) else {
            continue;
        };
        read = true;
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
            if let Some(found) = statement(node, text, standard, cx) {
                return Some(found);
            }
        }
    }
    (!read)
        .then(|| {
            Violation::new(
                Rule::HiddenSql,
                format!("SQL the parser cannot read ({})", shortened(sql)),
            )
        })
        .and_then(|v| cx.refuse(v))
}

/// Walks a statement's tree: every node tagged with its type (the JSON of a `Node` is
/// `{"FuncCall": {…}}`), at any depth.
fn walk(v: &Value, cx: Cx) -> Option<Violation> {
    match v {
        Value::Object(map) => map.iter().find_map(|(key, value)| {
            let tagged = key.starts_with(|c: char| c.is_ascii_uppercase());
            tagged
                .then(|| node(key, value, cx))
                .flatten()
                .and_then(|v| cx.refuse(v))
                .or_else(|| walk(value, cx))
        }),
        Value::Array(items) => items.iter().find_map(|item| walk(item, cx)),
        _ => None,
    }
}

/// The rule one node of a statement's tree breaks, if any.
fn node(tag: &str, n: &Value, cx: Cx) -> Option<Violation> {
    let refuse = |rule, what: &str| Some(Violation::new(rule, what));
    match tag {
        "CopyStmt" => {
            let way = if n["is_from"].as_bool() == Some(true) {
                "FROM"
            } else {
                "TO"
            };
            if n["is_program"].as_bool() == Some(true) {
                return Some(Violation::new(
                    Rule::ServerPrograms,
                    format!("COPY ... {way} PROGRAM runs a program on the database server"),
                ));
            }
            let file = n["filename"].as_str().unwrap_or_default();
            (!file.is_empty()).then(|| {
                Violation::new(
                    Rule::ServerFiles,
                    format!(
                        "COPY ... {way} '{}' reads or writes a file on the database server",
                        shortened(file)
                    ),
                )
            })
        }
        "FuncCall" => call(n),
        "VariableSetStmt"
            if LIMIT_SETTINGS
                .iter()
                .any(|s| s.eq_ignore_ascii_case(n["name"].as_str().unwrap_or_default())) =>
        {
            let name = n["name"].as_str().unwrap_or_default();
            Some(Violation::new(
                Rule::Limits,
                limit_undone(&format!("SET or RESET of {name}"), name),
            ))
        }
        "VariableSetStmt"
            if n["name"]
                .as_str()
                .is_some_and(|name| name.eq_ignore_ascii_case("search_path")) =>
        {
            catalog_first(constant(&n["args"][0]))
        }
        "VariableSetStmt" => {
            let name = n["name"].as_str().unwrap_or_default();
            ROLE_SETTINGS
                .iter()
                .any(|s| s.eq_ignore_ascii_case(name))
                .then(|| {
                    Violation::new(
                        Rule::RoleSwitch,
                        format!(
                            "SET or RESET of {name} switches the role the migration's SQL runs as"
                        ),
                    )
                })
        }
        "AlterSystemStmt" => refuse(
            Rule::ServerSettings,
            "ALTER SYSTEM changes the server's configuration",
        ),
        "AlterDatabaseStmt" | "AlterDatabaseSetStmt" => refuse(
            Rule::ServerSettings,
            "ALTER DATABASE changes settings of every later session on the database",
        ),
        "AlterRoleSetStmt" => refuse(
            Rule::ServerSettings,
            "ALTER ROLE ... SET changes settings of the role's later sessions",
        ),
        "LoadStmt" => refuse(
            Rule::ServerControl,
            "LOAD loads a shared library into the server",
        ),
        "CreateExtensionStmt" => {
            let name = n["extname"].as_str().unwrap_or_default();
            (!TRUSTED_EXTENSIONS.iter().any(|e| e.eq_ignore_ascii_case(name))).then(|| {
                Violation::new(
                    Rule::Extensions,
                    format!("CREATE EXTENSION {name} installs an extension that is not on wasmig's list of trusted ones"),
                )
            })
        }
        "CreatePlangStmt" => refuse(
            Rule::Languages,
            "CREATE LANGUAGE adds a procedural language",
        ),
        "CreateFunctionStmt" => created_in_catalog(&n["funcname"], "CREATE FUNCTION or PROCEDURE")
            .or_else(|| function(n, cx)),
        "DoStmt" => {
            let lang = language(&n["args"], "plpgsql");
            (lang != "plpgsql").then(|| {
                Violation::new(
                    Rule::Languages,
                    format!("DO ... LANGUAGE {lang} runs code in a language other than PL/pgSQL"),
                )
            })
        }
        "CreateRoleStmt" => refuse(Rule::Roles, "CREATE ROLE (or USER, GROUP) creates a role"),
        "AlterRoleStmt" => refuse(Rule::Roles, "ALTER ROLE (or USER, GROUP) changes a role"),
        "DropRoleStmt" => refuse(Rule::Roles, "DROP ROLE (or USER, GROUP) drops a role"),
        "GrantRoleStmt" => refuse(
            Rule::Roles,
            "GRANT or REVOKE of a role changes role membership",
        ),
        "RenameStmt" if n["rename_type"].as_i64() == Some(ObjectType::ObjectRole as i64) => {
            refuse(Rule::Roles, "ALTER ROLE ... RENAME renames a role")
        }
        // A refused function renamed, moved or altered runs under another name; and the
        // system catalog is the server's, not a migration's.
        "RenameStmt"
        | "AlterObjectSchemaStmt"
        | "AlterOwnerStmt"
        | "AlterFunctionStmt"
        | "AlterObjectDependsStmt" => catalog_object(n).or_else(|| named(n)),
        "CreateTableSpaceStmt" | "AlterTableSpaceOptionsStmt" => refuse(
            Rule::ServerFiles,
            "a TABLESPACE puts files in a directory of the database server",
        ),
        "CreateFdwStmt" | "AlterFdwStmt" => refuse(
            Rule::ForeignData,
            "a FOREIGN DATA WRAPPER connects the database server to data outside it",
        ),
        "CreateForeignServerStmt" | "AlterForeignServerStmt" => refuse(
            Rule::ForeignData,
            "CREATE or ALTER SERVER defines a connection from the database server",
        ),
        "CreateUserMappingStmt" | "AlterUserMappingStmt" => refuse(
            Rule::ForeignData,
            "a USER MAPPING holds credentials for a connection from the database server",
        ),
        "CreateForeignTableStmt" => refuse(
            Rule::ForeignData,
            "CREATE FOREIGN TABLE reads data from outside the database",
        ),
        "ImportForeignSchemaStmt" => refuse(
            Rule::ForeignData,
            "IMPORT FOREIGN SCHEMA reads data from outside the database",
        ),
        "CreateSubscriptionStmt" | "AlterSubscriptionStmt" | "DropSubscriptionStmt" => refuse(
            Rule::ForeignData,
            "a SUBSCRIPTION connects the database server to another server",
        ),
        // Statements that make a function run without a call naming it (a cast, an
        // operator, an aggregate, a trigger), or grant it.
        "DefineStmt" => created_in_catalog(&n["defnames"], "CREATE OPERATOR, AGGREGATE or TYPE")
            .or_else(|| named(n)),
        "CreateCastStmt"
        | "CreateOpClassStmt"
        | "AlterOpFamilyStmt"
        | "CreateConversionStmt"
        | "CreateTransformStmt"
        | "CreateTrigStmt"
        | "GrantStmt" => named(n),
        "CreateEventTrigStmt" | "AlterEventTrigStmt" => refuse(
            Rule::ServerControl,
            "an EVENT TRIGGER runs on every later DDL statement of anyone in the database",
        ),
        // Views of the server's configuration files.
        "RangeVar"
            if SERVER_FILE_VIEWS
                .iter()
                .any(|v| v.eq_ignore_ascii_case(n["relname"].as_str().unwrap_or_default())) =>
        {
            Some(Violation::new(
                Rule::ServerFiles,
                format!(
                    "{} reads the database server's configuration files",
                    n["relname"].as_str().unwrap_or_default()
                ),
            ))
        }
        _ => None,
    }
}

/// Settings that hold a step to its limits, and `exit_on_error`, which would make the
/// server end the session at the migration's first error (read as a lost connection, the
/// server's failure, exit 5): a migration may not change them.
const LIMIT_SETTINGS: [&str; 6] = [
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "transaction_timeout",
    "client_connection_check_interval",
    "exit_on_error",
];

/// What changing one of [`LIMIT_SETTINGS`] (`name`, as written) would do, after `what`
/// (`SET or RESET of x`, `set_config('x', …)`).
fn limit_undone(what: &str, name: &str) -> String {
    if name.trim().eq_ignore_ascii_case("exit_on_error") {
        format!(
            "{what} would make the server end the session at the migration's first error, which wasmig would report as a lost connection"
        )
    } else {
        format!("{what} undoes a limit wasmig (or the operator) set for the step")
    }
}

/// Views that read the server's configuration files.
const SERVER_FILE_VIEWS: [&str; 3] = [
    "pg_file_settings",
    "pg_hba_file_rules",
    "pg_ident_file_mappings",
];

/// An `ALTER`, rename or move of an object in the system catalog (`pg_catalog`,
/// `information_schema`, named as such).
fn catalog_object(n: &Value) -> Option<Violation> {
    let mut names = Vec::new();
    all_strings(n, &mut names);
    names.extend(n["relation"]["schemaname"].as_str());
    names
        .iter()
        .find(|s| s.eq_ignore_ascii_case("pg_catalog") || s.eq_ignore_ascii_case("information_schema"))
        .map(|schema| {
            Violation::new(
                Rule::ServerControl,
                format!("the statement alters an object of the system catalog ({schema}), which is the server's"),
            )
        })
}

/// A `CREATE` (or `CREATE OR REPLACE`) of a function, procedure, operator, aggregate or
/// type named in the system catalog's schemas (`pg_catalog.age`): a built-in replaced
/// answers for every session of the database, and for every check wasmig makes in SQL.
/// (Made unqualified with the catalog first in the `search_path`: see [`catalog_first`].)
fn created_in_catalog(qualified: &Value, what: &str) -> Option<Violation> {
    let names = strings(qualified);
    let schema = names.len().checked_sub(2).map(|i| names[i])?;
    (schema.eq_ignore_ascii_case("pg_catalog") || schema.eq_ignore_ascii_case("information_schema"))
        .then(|| {
            Violation::new(
                Rule::ServerControl,
                format!("{what} in {schema} makes or replaces an object of the system catalog, which every session of the database calls (wasmig's checks too)"),
            )
        })
}

/// A `search_path` whose first schema is the system catalog's (`SET search_path =
/// pg_catalog`, `set_config('search_path', 'pg_catalog, public', …)`, a function's `SET`
/// clause): what the migration then creates unqualified is made there, as with
/// [`created_in_catalog`]. `path` is the first value given (`None`: `DEFAULT` or none).
fn catalog_first(path: Option<&str>) -> Option<Violation> {
    let first = path?.split(',').next()?.trim().trim_matches('"');
    (first.eq_ignore_ascii_case("pg_catalog") || first.eq_ignore_ascii_case("information_schema"))
        .then(|| {
            Violation::new(
                Rule::ServerControl,
                format!("a search_path that begins with {first} makes what the migration creates unqualified an object of the system catalog"),
            )
        })
}

/// A function call: a refused function, or `set_config` of the role.
fn call(n: &Value) -> Option<Violation> {
    let names = strings(&n["funcname"]);
    let name = *names.last()?;
    if name.eq_ignore_ascii_case("set_config") {
        return match constant(&n["args"][0]) {
            Some(setting)
                if LIMIT_SETTINGS
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(setting.trim())) =>
            {
                Some(Violation::new(
                    Rule::Limits,
                    limit_undone(&format!("set_config('{setting}', …)"), setting),
                ))
            }
            Some(setting) if setting.trim().eq_ignore_ascii_case("search_path") => {
                match constant(&n["args"][1]) {
                    Some(path) => catalog_first(Some(path)),
                    None => Some(Violation::new(
                        Rule::ComputedSetting,
                        "set_config('search_path', …) of a path given by an expression may put the system catalog first, and the parser cannot see which path",
                    )),
                }
            }
            Some(setting) => ROLE_SETTINGS
                .iter()
                .any(|s| s.eq_ignore_ascii_case(setting.trim()))
                .then(|| {
                    Violation::new(
                        Rule::RoleSwitch,
                        format!("set_config('{setting}', …) switches the role the migration's SQL runs as"),
                    )
                }),
            None => Some(Violation::new(
                Rule::ComputedSetting,
                "set_config of a setting named by an expression may switch the role, and the parser cannot see which setting",
            )),
        };
    }
    let (rule, does) = refused_function(name)?;
    Some(Violation::new(
        rule,
        format!("{}() {does}", names.join(".")),
    ))
}

/// A refused function named anywhere in a statement that makes functions run unnamed.
fn named(n: &Value) -> Option<Violation> {
    let mut names = Vec::new();
    all_strings(n, &mut names);
    names.into_iter().find_map(|name| {
        let (rule, does) = refused_function(name)?;
        Some(Violation::new(
            rule,
            format!("the statement makes {name}() run where no call names it, and {name}() {does}"),
        ))
    })
}

/// The rule a function breaks and what it does, by its name (any schema, any case).
fn refused_function(name: &str) -> Option<(Rule, &'static str)> {
    let name = name.to_ascii_lowercase();
    Some(match name.as_str() {
        "pg_read_file"
        | "pg_read_binary_file"
        | "pg_stat_file"
        | "pg_file_write"
        | "pg_file_rename"
        | "pg_file_unlink"
        | "pg_file_sync"
        | "pg_logdir_ls"
        | "lo_import"
        | "lo_export" => (
            Rule::ServerFiles,
            "reads or writes files on the database server",
        ),
        n if n.starts_with("pg_ls_") && n.ends_with("dir") => (
            Rule::ServerFiles,
            "lists a directory of the database server",
        ),
        // tablefunc's crosstab (every form) runs the query it is given as text.
        n if n.starts_with("crosstab") => (
            Rule::HiddenSql,
            "runs SQL given to it as text, which the parser cannot see",
        ),
        n if n.starts_with("dblink") => (
            Rule::ForeignData,
            "connects from the database server and runs SQL in another session",
        ),
        "pg_terminate_backend" | "pg_cancel_backend" | "pg_signal_backend" => {
            (Rule::ServerControl, "signals another session on the server")
        }
        "pg_reload_conf"
        | "pg_rotate_logfile"
        | "pg_promote"
        | "pg_switch_wal"
        | "pg_switch_xlog"
        | "pg_create_restore_point"
        | "pg_backup_start"
        | "pg_backup_stop"
        | "pg_start_backup"
        | "pg_stop_backup"
        | "pg_log_backend_memory_contexts" => (Rule::ServerControl, "takes control of the server"),
        "query_to_xml"
        | "query_to_xml_and_xmlschema"
        | "query_to_xmlschema"
        | "cursor_to_xml"
        | "cursor_to_xmlschema"
        | "ts_stat"
        | "ts_rewrite"
        | "connectby" => (
            Rule::HiddenSql,
            "runs SQL given to it as text, which the parser cannot see",
        ),
        _ => return None,
    })
}

/// A `CREATE FUNCTION` or `PROCEDURE`: its language, and a `LANGUAGE sql` text body.
fn function(n: &Value, cx: Cx) -> Option<Violation> {
    let kind = if n["is_procedure"].as_bool() == Some(true) {
        "PROCEDURE"
    } else {
        "FUNCTION"
    };
    match language(&n["options"], "sql").as_str() {
        // Its PL/pgSQL is read by `statement`, with the statement's text.
        "plpgsql" => None,
        "sql" => options(&n["options"])
            .filter(|(name, _)| *name == "as")
            .flat_map(|(_, arg)| {
                let mut bodies = Vec::new();
                all_strings(arg, &mut bodies);
                bodies
            })
            .find_map(|body| text(body, cx.deeper()))
            .map(|v| within(v, "in the body of a function")),
        other => cx.refuse(Violation::new(
            Rule::Languages,
            format!(
                "CREATE {kind} ... LANGUAGE {other} runs code in a language other than SQL and PL/pgSQL"
            ),
        )),
    }
}

/// The `LANGUAGE` of a function's options or a `DO` block's arguments, lowercase.
pub(super) fn language(options_list: &Value, default: &str) -> String {
    options(options_list)
        .find(|(name, _)| *name == "language")
        .and_then(|(_, arg)| arg["node"]["String"]["sval"].as_str())
        .unwrap_or(default)
        .to_ascii_lowercase()
}

/// The `DefElem`s of a list: their names and arguments.
pub(super) fn options(list: &Value) -> impl Iterator<Item = (&str, &Value)> {
    list.as_array().into_iter().flatten().filter_map(|item| {
        let elem = &item["node"]["DefElem"];
        Some((elem["defname"].as_str()?, &elem["arg"]))
    })
}

/// The names of a qualified name (a list of `String` nodes).
pub(super) fn strings(list: &Value) -> Vec<&str> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item["node"]["String"]["sval"].as_str())
        .collect()
}

/// Every `String` node's text under `v`.
pub(super) fn all_strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(map) => {
            if let Some(s) = map.get("String").and_then(|s| s["sval"].as_str()) {
                out.push(s);
            }
            map.values().for_each(|v| all_strings(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| all_strings(v, out)),
        _ => {}
    }
}

/// The text of a string constant (`'x'`, `'x'::text`), else `None`.
fn constant(node: &Value) -> Option<&str> {
    let node = &node["node"];
    if let Some(text) = node["AConst"]["val"]["Sval"]["sval"].as_str() {
        return Some(text);
    }
    let cast = &node["TypeCast"]["arg"];
    if cast.is_null() {
        return None;
    }
    constant(cast)
}

/// Walks the JSON of PL/pgSQL functions (`pg_query::parse_plpgsql`): every expression and
/// SQL statement in it, and every dynamic query.
fn walk_plpgsql(v: &Value, cx: Cx) -> Option<Violation> {
    match v {
        Value::Object(map) => map.iter().find_map(|(key, value)| {
            let found = match key.as_str() {
                "PLpgSQL_expr" => expression(value, cx),
                "PLpgSQL_stmt_dynexecute" | "PLpgSQL_stmt_dynfors" => dynamic(&value["query"], cx),
                "PLpgSQL_stmt_open" | "PLpgSQL_stmt_return_query" => match value.get("dynquery") {
                    Some(d) if !d.is_null() => dynamic(d, cx),
                    _ => None,
                },
                _ => None,
            };
            found.or_else(|| walk_plpgsql(value, cx))
        }),
        Value::Array(items) => items.iter().find_map(|item| walk_plpgsql(item, cx)),
        _ => None,
    }
}

/// How PL/pgSQL's parser reads an expression's text (PostgreSQL's `RawParseMode`).
const PARSE_DEFAULT: i64 = 0;
const PARSE_TYPE_NAME: i64 = 1;
const PARSE_EXPRESSION: i64 = 2;

/// One PL/pgSQL expression or embedded statement, checked as SQL.
fn expression(e: &Value, cx: Cx) -> Option<Violation> {
    match expression_sql(e) {
        Ok(sql) => text(&sql, cx),
        Err(what) => cx.refuse(Violation::new(Rule::HiddenSql, what)),
    }
}

/// A PL/pgSQL expression or embedded statement as SQL the parser reads whole (an
/// expression as `SELECT expression`), or what could not be read.
pub(super) fn expression_sql(e: &Value) -> Result<String, String> {
    let Some(query) = e["query"].as_str() else {
        return Err("a PL/pgSQL expression wasmig could not read".to_owned());
    };
    Ok(match e["parseMode"].as_i64().unwrap_or(PARSE_DEFAULT) {
        PARSE_DEFAULT => query.to_owned(),
        PARSE_TYPE_NAME => format!("SELECT NULL::{query}"),
        PARSE_EXPRESSION => format!("SELECT {query}"),
        // An assignment, `target := value`: both sides are expressions (a subscript of
        // the target may call a function).
        _ => assignment(query).ok_or_else(|| {
            format!(
                "a PL/pgSQL assignment wasmig could not read ({})",
                shortened(query)
            )
        })?,
    })
}

/// `target := value` (or `=`) as `SELECT target, value`.
fn assignment(query: &str) -> Option<String> {
    let tokens = pg_query::scan(query).ok()?.tokens;
    let mut nesting = 0i32;
    let at = tokens.iter().find(|t| {
        match t.token {
            t if t == Token::Ascii40 as i32 || t == Token::Ascii91 as i32 => nesting += 1,
            t if t == Token::Ascii41 as i32 || t == Token::Ascii93 as i32 => nesting -= 1,
            _ => {}
        }
        nesting == 0 && (t.token == Token::ColonEquals as i32 || t.token == Token::Ascii61 as i32)
    })?;
    let start = usize::try_from(at.start).ok()?;
    let end = usize::try_from(at.end).ok()?;
    Some(format!(
        "SELECT {}, {}",
        query.get(..start)?,
        query.get(end..)?
    ))
}

/// A dynamic query (`EXECUTE`, `FOR … IN EXECUTE`, `OPEN … FOR EXECUTE`, `RETURN QUERY
/// EXECUTE`): a constant string is parsed and checked; anything else is refused.
fn dynamic(d: &Value, cx: Cx) -> Option<Violation> {
    match dynamic_sql(d) {
        Ok(sql) => text(&sql, cx.deeper()).map(|v| within(v, "in a string EXECUTE runs")),
        Err(query) => cx.refuse(Violation::new(
            Rule::HiddenSql,
            format!(
                "EXECUTE of SQL built at run time ({}) runs statements the parser cannot see",
                shortened(&query)
            ),
        )),
    }
}

/// The SQL a dynamic query runs when it is a constant string; else its expression's text.
pub(super) fn dynamic_sql(d: &Value) -> Result<String, String> {
    let query = d["PLpgSQL_expr"]["query"].as_str().unwrap_or_default();
    pg_query::parse(&format!("SELECT {query}"), ParserOptions::DEFAULT)
        .ok()
        .and_then(|parsed| serde_json::to_value(&parsed.protobuf).ok())
        .and_then(|tree| {
            let select = &tree["stmts"][0]["stmt"]["node"]["SelectStmt"];
            let targets = select["target_list"].as_array()?;
            let only = tree["stmts"].as_array()?.len() == 1
                && targets.len() == 1
                && select["from_clause"].as_array().is_none_or(Vec::is_empty);
            only.then(|| constant(&targets[0]["node"]["ResTarget"]["val"]).map(str::to_owned))?
        })
        .ok_or_else(|| query.to_owned())
}

/// A violation found inside a body, saying where.
fn within(mut v: Violation, place: &str) -> Violation {
    v.what = format!("{} ({place})", v.what);
    v
}

/// `text` cut to 60 characters for a message.
pub(super) fn shortened(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

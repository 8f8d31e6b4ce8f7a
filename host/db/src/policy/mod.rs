//! The untrusted SQL policy: what a migration's SQL may not do when the project is
//! untrusted (`wasmig up --untrusted`), whatever the database role could do.
//!
//! Owns: the [`Policy`] a session holds, the rules ([`Rule`]) and the refusal a guest sees
//! (`WASMIG-POLICY`, naming the rule and what to do), SQLite's lexical check, and (in `pg`)
//! PostgreSQL's, which reads the tree PostgreSQL's own parser made of the statement
//! (`pg_parse` parses each statement once and hands the tree here), the SQL and PL/pgSQL
//! bodies of functions and `DO` blocks included.
//!
//! What no parser can see is not caught here: SQL built at run time (refused instead, where
//! it is visible as such: a PL/pgSQL `EXECUTE` of a string that is not a constant), a
//! function created by an earlier, trusted revision that calls a refused one, an operator
//! or cast whose function is refused when it was created outside the migration. The database
//! role is the backstop (see `docs/src/sandbox.md`).
//!
//! Not here: transaction control and lexing changes, refused in every mode (`pg_parse`,
//! `tx_control`), or running anything.

use wasmig_contract::SqlError;

pub(crate) mod pg;
#[cfg(test)]
mod tests;

/// What a session holds a migration's SQL to, beyond what every session refuses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Policy {
    /// As the role allows (the default): only transaction control and changes to how the
    /// server reads SQL are refused.
    #[default]
    Trusted,
    /// The untrusted SQL policy: statements that reach outside the database, take control
    /// of the server or other sessions, change roles, or run SQL the parser cannot see are
    /// refused before they reach the server (`WASMIG-POLICY`).
    Untrusted,
}

/// The extensions an untrusted migration may `CREATE EXTENSION`: trusted contrib modules
/// that add types, functions and index methods working inside the database, and reach no
/// file, program or network (no `adminpack`, `dblink`, `postgres_fdw`, `file_fdw`, `lo`).
pub const TRUSTED_EXTENSIONS: [&str; 16] = [
    "btree_gin",
    "btree_gist",
    "citext",
    "cube",
    "earthdistance",
    "fuzzystrmatch",
    "hstore",
    "intarray",
    "isn",
    "ltree",
    "pg_trgm",
    "pgcrypto",
    "plpgsql",
    "seg",
    "tablefunc",
    "uuid-ossp",
];

/// A rule of the untrusted policy, named in every refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    /// Runs a program on the database server.
    ServerPrograms,
    /// Reads, writes or lists the database server's files (or another database file).
    ServerFiles,
    /// Signals other sessions or controls the server (reload, WAL, backups, `LOAD`).
    ServerControl,
    /// Persists settings for the server, a database or a role (later sessions).
    ServerSettings,
    /// Runs SQL the parser cannot see (text built at run time, SQL given as a value).
    HiddenSql,
    /// Installs an extension not on [`TRUSTED_EXTENSIONS`] (or loads one, on SQLite).
    Extensions,
    /// Creates a language, or code in a language other than SQL and PL/pgSQL.
    Languages,
    /// Creates, changes or switches roles and authorization.
    Roles,
    /// Connects from the database server to elsewhere (foreign data, `dblink`,
    /// subscriptions).
    ForeignData,
}

impl Rule {
    /// The rule's name, as refusals and the documentation spell it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Rule::ServerPrograms => "server-programs",
            Rule::ServerFiles => "server-files",
            Rule::ServerControl => "server-control",
            Rule::ServerSettings => "server-settings",
            Rule::HiddenSql => "hidden-sql",
            Rule::Extensions => "extensions",
            Rule::Languages => "languages",
            Rule::Roles => "roles",
            Rule::ForeignData => "foreign-data",
        }
    }

    /// What the author can do instead.
    fn advice(self) -> &'static str {
        match self {
            Rule::ServerPrograms | Rule::ServerFiles | Rule::ServerControl => {
                "have an operator do it outside wasmig, or run the project trusted"
            }
            Rule::ServerSettings => {
                "set it for the migration's own transaction with SET LOCAL, or have an operator persist it"
            }
            Rule::HiddenSql => {
                "write the statement as constant SQL (in PL/pgSQL, EXECUTE a constant string or run the statement directly)"
            }
            Rule::Extensions => {
                "have an operator install it beforehand and leave CREATE EXTENSION out of the migration, or use a trusted extension (pgcrypto, uuid-ossp, citext, hstore, pg_trgm…)"
            }
            Rule::Languages => "write the function in SQL or PL/pgSQL",
            Rule::Roles => {
                "have an operator manage roles; the migration runs as the role wasmig connects with"
            }
            Rule::ForeignData => "have an operator set up foreign data and connections",
        }
    }
}

/// A statement the untrusted policy refuses: the rule, and what the statement does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    pub(crate) rule: Rule,
    /// What the statement does, as a sentence without its end: "COPY ... TO PROGRAM runs a
    /// program on the database server".
    pub(crate) what: String,
}

impl Violation {
    pub(crate) fn new(rule: Rule, what: impl Into<String>) -> Self {
        Violation {
            rule,
            what: what.into(),
        }
    }

    /// The error a guest (or a SQL revision's step) gets: `WASMIG-POLICY`. `at` names the
    /// statement in a script of several.
    pub(crate) fn error(&self, at: &str) -> SqlError {
        SqlError::wasmig(
            "POLICY",
            format!(
                "{}{at}; untrusted migrations may not (rule: {}): {}",
                self.what,
                self.rule.name(),
                self.rule.advice()
            ),
        )
    }
}

/// Why SQLite's statement `text` (whose first words, uppercased, are `lead`) is refused by
/// the untrusted policy: `ATTACH`/`DETACH DATABASE` and `VACUUM INTO` (another database
/// file), `load_extension` (native code). Lexical, as SQLite's whole statement check is:
/// the name anywhere in the text, even in a literal, is refused (cheap to avoid, and
/// SQLite names cannot be escaped).
pub(crate) fn sqlite_violation(text: &str, lead: &[String]) -> Option<Violation> {
    let lower = text.to_ascii_lowercase();
    match lead.first().map(String::as_str) {
        Some("ATTACH") => {
            return Some(Violation::new(
                Rule::ServerFiles,
                "ATTACH opens another database file",
            ));
        }
        Some("DETACH") => {
            return Some(Violation::new(
                Rule::ServerFiles,
                "DETACH closes a database file another statement attached",
            ));
        }
        Some("VACUUM") if has_word(&lower, "into") => {
            return Some(Violation::new(
                Rule::ServerFiles,
                "VACUUM INTO writes another database file",
            ));
        }
        _ => {}
    }
    lower.contains("load_extension").then(|| {
        Violation::new(
            Rule::Extensions,
            "load_extension loads native code into the database process",
        )
    })
}

/// Whether `word` occurs in `text` as a word of its own (lowercase).
fn has_word(text: &str, word: &str) -> bool {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|w| w == word)
}

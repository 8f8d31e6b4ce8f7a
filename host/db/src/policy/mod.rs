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

use std::sync::Arc;

use wasmig_contract::SqlError;
use wasmig_plan::{Capabilities, Capability};

pub(crate) mod capabilities;
pub(crate) mod pg;
#[cfg(test)]
mod tests;

/// What a session holds a migration's SQL to, beyond what every session refuses: the
/// untrusted SQL policy (with `--untrusted`), the capabilities the revision may use
/// (`capabilities` in its `migration.toml`, `WASMIG_ALLOWED_CAPABILITIES`), and the role
/// it runs as (`role` in `wasmig.toml`: statements that leave it are refused).
///
/// [`Policy::TRUSTED`] (the default) refuses only transaction control and changes to how
/// the server reads SQL.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Policy {
    untrusted: bool,
    capabilities: Option<CapabilityLimit>,
    role: Option<Arc<str>>,
}

/// The capabilities a revision's statements may use, and why the others are not allowed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CapabilityLimit {
    /// The revision whose statements these are.
    revision: Arc<str>,
    /// What its `migration.toml` declares (`None`: nothing, so the ceiling alone holds).
    declared: Option<Capabilities>,
    /// The operator's `WASMIG_ALLOWED_CAPABILITIES` (`None`: not set).
    ceiling: Option<Capabilities>,
}

impl CapabilityLimit {
    fn allowed(&self) -> Capabilities {
        let declared = self.declared.unwrap_or(Capabilities::ALL);
        declared.intersection(self.ceiling.unwrap_or(Capabilities::ALL))
    }
}

/// What a verdict on a statement depends on (the cache key of `pg_parse::judge`): the
/// revision's name only changes the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct PolicyKey {
    untrusted: bool,
    allowed: Option<Capabilities>,
    role: bool,
}

impl Policy {
    /// As the role allows: only transaction control and changes to how the server reads
    /// SQL are refused.
    pub const TRUSTED: Policy = Policy {
        untrusted: false,
        capabilities: None,
        role: None,
    };
    /// The untrusted SQL policy: statements that reach outside the database, take control
    /// of the server or other sessions, change roles, or run SQL the parser cannot see are
    /// refused before they reach the server (`WASMIG-POLICY`).
    pub const UNTRUSTED: Policy = Policy {
        untrusted: true,
        capabilities: None,
        role: None,
    };

    /// [`Policy::UNTRUSTED`] when `untrusted`, else [`Policy::TRUSTED`].
    pub fn new(untrusted: bool) -> Self {
        Policy {
            untrusted,
            ..Policy::TRUSTED
        }
    }

    /// This policy, with `revision`'s statements held to the capabilities it `declared`
    /// in its `migration.toml` and to the operator's `ceiling`. With neither, nothing
    /// changes.
    #[must_use]
    pub fn with_capabilities(
        mut self,
        revision: &str,
        declared: Option<Capabilities>,
        ceiling: Option<Capabilities>,
    ) -> Self {
        self.capabilities = (declared.is_some() || ceiling.is_some()).then(|| CapabilityLimit {
            revision: revision.into(),
            declared,
            ceiling,
        });
        self
    }

    /// This policy, with the migration's SQL run as `role` (`role` in `wasmig.toml`):
    /// statements that switch the role (`SET ROLE`, `RESET ROLE`, `SET SESSION
    /// AUTHORIZATION`, `set_config('role', …)`) are refused in every mode.
    #[must_use]
    pub fn with_role(mut self, role: Option<&str>) -> Self {
        self.role = role.map(Arc::from);
        self
    }

    /// Whether the untrusted SQL policy holds.
    pub fn is_untrusted(&self) -> bool {
        self.untrusted
    }

    /// What the statements may use (`None`: anything).
    pub(crate) fn allowed(&self) -> Option<Capabilities> {
        self.capabilities.as_ref().map(CapabilityLimit::allowed)
    }

    /// Whether statements that switch the role are refused (untrusted, or a `role` set).
    pub(crate) fn locks_role(&self) -> bool {
        self.untrusted || self.role.is_some()
    }

    /// Whether anything beyond transaction control is checked.
    pub(crate) fn checks_more(&self) -> bool {
        self.untrusted || self.role.is_some() || self.capabilities.is_some()
    }

    pub(crate) fn key(&self) -> PolicyKey {
        PolicyKey {
            untrusted: self.untrusted,
            allowed: self.allowed(),
            role: self.role.is_some(),
        }
    }
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
    /// Undoes a limit wasmig or the operator set for the step (`statement_timeout`…).
    Limits,
    /// Runs SQL the parser cannot see (text built at run time, SQL given as a value).
    HiddenSql,
    /// Installs an extension not on [`TRUSTED_EXTENSIONS`] (or loads one, on SQLite).
    Extensions,
    /// Creates a language, or code in a language other than SQL and PL/pgSQL.
    Languages,
    /// Creates or changes roles and authorization.
    Roles,
    /// Switches the role the migration's SQL runs as (`SET ROLE`, `set_config('role', …)`):
    /// refused whenever a `role` is set too. Named `roles`, as [`Rule::Roles`].
    RoleSwitch,
    /// Changes a setting named by an expression, which may be the role: refused whenever
    /// a `role` is set too. Named `hidden-sql`, as [`Rule::HiddenSql`].
    ComputedSetting,
    /// Needs a capability the revision may not use (`capabilities` in its
    /// `migration.toml`, `WASMIG_ALLOWED_CAPABILITIES`).
    Capability(Capability),
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
            Rule::Limits => "limits",
            Rule::HiddenSql | Rule::ComputedSetting => "hidden-sql",
            Rule::Extensions => "extensions",
            Rule::Languages => "languages",
            Rule::Roles | Rule::RoleSwitch => "roles",
            Rule::Capability(_) => "capabilities",
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
            Rule::Limits => {
                "ask for other limits in the revision's migration.toml (statement_timeout_secs, lock_timeout_secs, timeout_secs), which the operator's ceilings bound"
            }
            Rule::HiddenSql | Rule::ComputedSetting => {
                "write the statement as constant SQL (in PL/pgSQL, EXECUTE a constant string or run the statement directly)"
            }
            Rule::Extensions => {
                "have an operator install it beforehand and leave CREATE EXTENSION out of the migration, or use a trusted extension (pgcrypto, uuid-ossp, citext, hstore, pg_trgm…)"
            }
            Rule::Languages => "write the function in SQL or PL/pgSQL",
            Rule::Roles | Rule::RoleSwitch => {
                "have an operator manage roles; the migration runs as the role wasmig connects with"
            }
            Rule::Capability(_) => "declare it, or leave the statement out",
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
    /// statement in a script of several; `policy` says why it is refused.
    pub(crate) fn error(&self, at: &str, policy: &Policy) -> SqlError {
        let message = match (self.rule, &policy.capabilities) {
            (Rule::Capability(needed), Some(limit)) => {
                let declared = limit.declared.unwrap_or(Capabilities::ALL);
                if declared.has(needed) {
                    format!(
                        "{}{at} needs the capability `{needed}`, which the operator does not allow \
                         (WASMIG_ALLOWED_CAPABILITIES: {}): leave the statement out of revision \
                         {}, or have the operator allow `{needed}`",
                        self.what,
                        limit.ceiling.unwrap_or(Capabilities::ALL),
                        limit.revision
                    )
                } else {
                    format!(
                        "{}{at} needs the capability `{needed}`, which revision {} does not \
                         declare in its migration.toml (it declares: {declared}): add `{needed}` \
                         to its `capabilities`, or leave the statement out",
                        self.what, limit.revision
                    )
                }
            }
            (Rule::RoleSwitch | Rule::ComputedSetting, _) if !policy.untrusted => {
                let role = policy.role.as_deref().unwrap_or_default();
                format!(
                    "{}{at}; a migration run as the role `{role}` (`role` in wasmig.toml) may \
                     not leave it (rule: {}): remove the statement",
                    self.what,
                    self.rule.name()
                )
            }
            _ => format!(
                "{}{at}; untrusted migrations may not (rule: {}): {}",
                self.what,
                self.rule.name(),
                self.rule.advice()
            ),
        };
        SqlError::wasmig("POLICY", message)
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

//! What a revision's SQL may do: the capabilities a `migration.toml` declares
//! (`capabilities = ["read", "write"]`) and the operator's ceiling
//! (`WASMIG_ALLOWED_CAPABILITIES`) allows.
//!
//! The vocabulary follows PostgreSQL's own privileges, so that a declaration reads as the
//! rights a role would need: `read` is what `SELECT` on a table allows, `write` what
//! `INSERT`, `UPDATE`, `DELETE` and `TRUNCATE` allow, `ddl` what only an object's owner
//! (or a schema's `CREATE` right) allows, `grant` what changes who may do what.
//!
//! Pure data: which statement needs which capability is the database crate's (it reads
//! PostgreSQL's parse tree, or SQLite's keywords); refusing is the session's.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One thing a revision's SQL may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    /// Read tables: `SELECT` (and `VALUES`, `TABLE`, `WITH`) from a relation, `COPY ... TO
    /// STDOUT`, `LOCK TABLE ... IN ACCESS SHARE MODE`. A `SELECT` of no relation (`SELECT
    /// 1`, `SELECT now()`) needs nothing.
    Read,
    /// Change rows: `INSERT`, `UPDATE`, `DELETE`, `MERGE`, `COPY ... FROM STDIN`,
    /// `TRUNCATE`, `SELECT ... FOR UPDATE`/`SHARE`, `LOCK TABLE` in the other modes,
    /// `CALL`, `NOTIFY`. A write's own reads (its `WHERE`, `INSERT ... SELECT`,
    /// `RETURNING`) come with it.
    Write,
    /// Define objects: `CREATE`, `ALTER`, `DROP`, `COMMENT ON`, `SECURITY LABEL` of
    /// tables, indexes (`CONCURRENTLY` too), views, sequences, types, functions, triggers,
    /// schemas, extensions…, and what only an owner may do: `ANALYZE`, `VACUUM`,
    /// `CLUSTER`, `REINDEX`, `REFRESH MATERIALIZED VIEW`. Also any statement wasmig does not
    /// classify otherwise.
    Ddl,
    /// Change who may do what: `GRANT`, `REVOKE`, `ALTER DEFAULT PRIVILEGES`, `ALTER ...
    /// OWNER TO`, `REASSIGN OWNED`, `DROP OWNED`, and roles (`CREATE`/`ALTER`/`DROP ROLE`).
    Grant,
}

impl Capability {
    /// Every capability, in the order messages list them.
    pub const ALL: [Capability; 4] = [
        Capability::Read,
        Capability::Write,
        Capability::Ddl,
        Capability::Grant,
    ];

    /// The name a manifest and `WASMIG_ALLOWED_CAPABILITIES` spell it with.
    pub fn name(self) -> &'static str {
        match self {
            Capability::Read => "read",
            Capability::Write => "write",
            Capability::Ddl => "ddl",
            Capability::Grant => "grant",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Capability {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Capability::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| format!("unknown capability `{s}`; one of read, write, ddl, grant"))
    }
}

/// A set of capabilities.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Capabilities(u8);

impl Capabilities {
    /// No capability: statements that touch no relation (`SELECT 1`, `SET LOCAL`, `SHOW`).
    pub const NONE: Capabilities = Capabilities(0);
    /// Every capability: what a statement wasmig cannot see into (SQL built at run time)
    /// may need.
    pub const ALL: Capabilities = Capabilities(0b1111);

    /// The set holding `capability` alone.
    pub fn of(capability: Capability) -> Self {
        Capabilities(capability.bit())
    }

    /// Whether `capability` is in the set.
    pub fn has(self, capability: Capability) -> bool {
        self.0 & capability.bit() != 0
    }

    /// The set with `capability` added.
    #[must_use]
    pub fn with(self, capability: Capability) -> Self {
        Capabilities(self.0 | capability.bit())
    }

    /// Both sets together.
    #[must_use]
    pub fn union(self, other: Capabilities) -> Self {
        Capabilities(self.0 | other.0)
    }

    /// What both sets hold.
    #[must_use]
    pub fn intersection(self, other: Capabilities) -> Self {
        Capabilities(self.0 & other.0)
    }

    /// The capabilities in `self` that `allowed` lacks.
    #[must_use]
    pub fn beyond(self, allowed: Capabilities) -> Self {
        Capabilities(self.0 & !allowed.0)
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The capabilities in the set, in [`Capability::ALL`]'s order.
    pub fn iter(self) -> impl Iterator<Item = Capability> {
        Capability::ALL.into_iter().filter(move |c| self.has(*c))
    }

    /// Parses a comma-separated list (`read,write`; spaces allowed, empty parts ignored).
    ///
    /// # Errors
    /// The first unknown name, with the known ones.
    pub fn parse_list(text: &str) -> Result<Self, String> {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .try_fold(Capabilities::NONE, |set, name| {
                Ok(set.with(name.parse::<Capability>()?))
            })
    }
}

impl FromIterator<Capability> for Capabilities {
    fn from_iter<I: IntoIterator<Item = Capability>>(iter: I) -> Self {
        iter.into_iter()
            .fold(Capabilities::NONE, |set, c| set.with(c))
    }
}

impl fmt::Display for Capabilities {
    /// `read, write` (`none` for the empty set).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        let names: Vec<&str> = self.iter().map(Capability::name).collect();
        f.write_str(&names.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_of_names_parses_and_an_unknown_name_is_refused() {
        let set = Capabilities::parse_list(" read, write ,").unwrap();
        assert!(set.has(Capability::Read) && set.has(Capability::Write));
        assert!(!set.has(Capability::Ddl));
        assert_eq!(set.to_string(), "read, write");
        assert_eq!(Capabilities::parse_list("").unwrap(), Capabilities::NONE);
        let e = Capabilities::parse_list("read,dml").unwrap_err();
        assert!(e.contains("unknown capability `dml`"), "{e}");
        assert_eq!(
            Capabilities::ALL.beyond(set).iter().collect::<Vec<_>>(),
            [Capability::Ddl, Capability::Grant]
        );
    }
}

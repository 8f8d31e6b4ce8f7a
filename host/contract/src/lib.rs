//! The host side of the WIT contract in `wit/`: the one `bindgen!` of the host, over the
//! current package version and every released older one (`wit/deps/`).
//!
//! The generated value, row and error types double as the data model of the database
//! crate, so a value travels from a guest to the database without a second, hand-written
//! copy of the contract. Only the sandbox crate's `host` module implements the generated
//! `Host` traits.
//!
//! Nothing here knows a host type: the `cursor` and `savepoint` resources are the
//! generated empty types, and the sandbox keeps its own state for them in its resource
//! table under the same handle.
#![allow(missing_docs, unreachable_pub)]

pub mod text;

wasmtime::component::bindgen!({
    path: "../../wit",
    // The world the host links: the current `migration` world (its imports and the
    // `upgrade`/`downgrade` exports), plus the imports of every released older version, so
    // components built against those keep running.
    inline: "
        package wasmig:host;

        world migration-host {
            include wasmig:migration/migration@0.4.0;
            import wasmig:migration/sql@0.3.0;
            import wasmig:migration/log@0.3.0;
            import wasmig:migration/batch@0.3.0;
            import wasmig:migration/sql@0.2.0;
            import wasmig:migration/log@0.2.0;
            import wasmig:migration/batch@0.2.0;
            import wasmig:migration/sql@0.1.0;
            import wasmig:migration/log@0.1.0;
        }
    ",
    world: "wasmig:host/migration-host",
    imports: { default: async | trappable },
    exports: { default: async },
    // The `types` of 0.2.0 and 0.1.0 are those of 0.3.0 but for `sql-dialect`, which lacks
    // `mysql`: both map onto `frozen_types`, the current types with the old dialect, so one
    // data model serves every version. (wasmtime 48's `with` maps whole interfaces, and of
    // single types only resources, `"a:b/i.resource"`: `types` is mapped whole.)
    // 0.3.0's `types` are 0.4.0's without the column types it added: mapped onto the
    // current ones (`unchanged_types`), so its values are the current values.
    with: {
        "wasmig:migration/types@0.3.0": crate::unchanged_types,
        "wasmig:migration/types@0.2.0": crate::frozen_types,
        "wasmig:migration/types@0.1.0": crate::frozen_types,
    },
});

/// The `types` interface of the frozen 0.3.0: the current types, which only added the
/// column types to it. The bindings of 0.3.0's `sql` name their types through this module.
pub mod unchanged_types {
    pub use crate::current::types::*;
}

/// The `types` interface of the frozen 0.2.0 and 0.1.0 (identical in both): the current
/// types, but for [`SqlDialect`](frozen_types::SqlDialect).
///
/// The bindings of the old `sql` interfaces name their types through this module, so a
/// value, row or error of an old component is the very type a current one uses. The
/// interface's (empty) `Host` trait and its `add_to_linker` are the current ones too: an
/// interface of types alone links nothing.
pub mod frozen_types {
    pub use crate::current::types::*;

    /// The `sql-dialect` of 0.2.0 and 0.1.0: PostgreSQL or SQLite, without 0.3.0's `mysql`.
    ///
    /// Written here rather than generated, since `bindgen!` cannot map the other types of
    /// an interface without this one; it shadows the current `SqlDialect` of the glob
    /// import. Linking type-checks it against the component's own `sql-dialect`, so a
    /// mismatch with the frozen WIT fails when a component is loaded, not at a call.
    #[derive(
        wasmtime::component::ComponentType,
        wasmtime::component::Lift,
        wasmtime::component::Lower,
        Clone,
        Copy,
        Debug,
        PartialEq,
        Eq,
    )]
    #[component(enum)]
    #[repr(u8)]
    pub enum SqlDialect {
        /// PostgreSQL: `$1`-style parameters.
        #[component(name = "postgres")]
        Postgres,
        /// SQLite: `?`/`?NNN`-style parameters.
        #[component(name = "sqlite")]
        Sqlite,
    }
}

/// The interfaces of the frozen 0.1.0, linked for components built against it.
pub use self::wasmig::migration0_1_0 as v0_1_0;
/// The interfaces of the frozen 0.2.0, linked for components built against it.
pub use self::wasmig::migration0_2_0 as v0_2_0;
/// The interfaces of the frozen 0.3.0, linked for components built against it.
pub use self::wasmig::migration0_3_0 as v0_3_0;
/// The interfaces of the current WIT version (0.4.0).
pub use self::wasmig::migration0_4_0 as current;

pub use self::current::types::{
    ArrayValue, Column, ColumnData, ColumnResult, ColumnValues, PackedBytes, PackedText,
    QueryResult, SqlDialect as Dialect, SqlError, Value,
};

impl SqlError {
    /// An error raised by wasmig itself (codes starting with `WASMIG-`, see the WIT).
    pub fn wasmig(code: &str, message: impl Into<String>) -> Self {
        SqlError {
            code: format!("WASMIG-{code}"),
            message: message.into(),
            detail: None,
            hint: None,
            constraint: None,
            table: None,
            column: None,
        }
    }
}

impl SqlError {
    /// The message with its code, detail and hint, for wasmig's own error output.
    /// (The generated `Display` shows the raw record.)
    /// The server's text is shown as data (see [`text::shown`]).
    pub fn describe(&self) -> String {
        let mut out = format!(
            "{} (code {})",
            text::shown(&self.message),
            text::shown(&self.code)
        );
        if let Some(detail) = &self.detail {
            out.push_str(&format!("; detail: {}", text::shown(detail)));
        }
        if let Some(hint) = &self.hint {
            out.push_str(&format!("; hint: {}", text::shown(hint)));
        }
        out
    }
}

impl Dialect {
    /// The dialect's lowercase name, as shown to users.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::Sqlite => "sqlite",
            Dialect::Mysql => "mysql",
        }
    }
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    /// Released WIT versions are frozen: components built against them (and stored in
    /// databases) must keep linking. A change goes into a new version in `wit/migration.wit`.
    #[test]
    fn released_wit_versions_are_unchanged() {
        let frozen = [
            (
                "../../wit/deps/migration-0.1.0/migration.wit",
                "3f45a609f9a105d627fd8a77c3e372a294906a42cf20d740ecb311b998a633f3",
            ),
            (
                "../../wit/deps/migration-0.2.0/migration.wit",
                "2cd3a6e447fa4d87b316cc4878b9ce537cd3acdf2426670977dcd99fb29272dd",
            ),
            (
                "../../wit/deps/migration-0.3.0/migration.wit",
                "804286ec5b625c68a5f447747a24057fe495afc5627d23ffca07942c96b9af94",
            ),
        ];
        for (path, pinned) in frozen {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
            let text = std::fs::read(&path).unwrap();
            assert_eq!(
                hex::encode(Sha256::digest(&text)),
                pinned,
                "{} is a released WIT version and must not change; put the change in wit/migration.wit under a new package version",
                path.display()
            );
        }
    }
}

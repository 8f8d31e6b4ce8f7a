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
    // components built against those keep running. 0.1.0's types are structurally those of
    // 0.2.0 and are mapped onto them, so one data model serves every version.
    inline: "
        package wasmig:host;

        world migration-host {
            include wasmig:migration/migration@0.2.0;
            import wasmig:migration/sql@0.1.0;
            import wasmig:migration/log@0.1.0;
        }
    ",
    world: "wasmig:host/migration-host",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "wasmig:migration/types@0.1.0": crate::wasmig::migration0_2_0::types,
    },
});

/// The interfaces of the frozen 0.1.0, linked for components built against it.
pub use self::wasmig::migration0_1_0 as v0_1_0;
/// The interfaces of the current WIT version (0.2.0).
pub use self::wasmig::migration0_2_0 as current;

pub use self::current::types::{
    ArrayValue, Column, QueryResult, SqlDialect as Dialect, SqlError, Value,
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
        let frozen = [(
            "../../wit/deps/migration-0.1.0/migration.wit",
            "3f45a609f9a105d627fd8a77c3e372a294906a42cf20d740ecb311b998a633f3",
        )];
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

//! The host side of the WIT contract in `wit/`: the one `bindgen!` of the host.
//!
//! The generated value, row and error types double as the data model of the `db` layer,
//! so a value travels from a guest to the database without a second, hand-written copy
//! of the contract. Only `sandbox::host` implements the generated `Host` traits.
#![allow(missing_docs, unreachable_pub)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "migration",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "wasmig:migration/sql.cursor": crate::sandbox::host::CursorHandle,
        "wasmig:migration/sql.savepoint": crate::sandbox::host::SavepointHandle,
    },
});

pub use self::wasmig::migration::types::{
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
    pub fn describe(&self) -> String {
        let mut out = format!("{} (code {})", self.message, self.code);
        if let Some(detail) = &self.detail {
            out.push_str(&format!("; detail: {detail}"));
        }
        if let Some(hint) = &self.hint {
            out.push_str(&format!("; hint: {hint}"));
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

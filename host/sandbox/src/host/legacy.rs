//! The frozen 0.3.0, 0.2.0 and 0.1.0 interfaces: the same functions as the current ones,
//! minus what the later versions added (0.2.0: `copy-in` and `batch`, in 0.1.0's case;
//! 0.3.0: the `mysql` dialect, in 0.2.0's and 0.1.0's; 0.4.0: the column calls). Each
//! delegates to the current implementation, through one macro for every version, so no
//! version can drift from another.
//!
//! Their values, rows and errors are the current types (see `wasmig_contract::frozen_types`);
//! only the log level and the dialect are translated, and the cursor and savepoint
//! resources retyped.

use super::*;
use wasmig_contract::frozen_types::SqlDialect as FrozenDialect;
use wasmig_contract::{v0_2_0, v0_3_0};

/// A frozen version asked for the dialect on a database it has no case for; carried as
/// the trap's error (blamed on the guest: see `classify` in the crate root).
#[derive(Debug, thiserror::Error)]
#[error(
    "the component was built against wasmig:migration@{version}, which has no mysql dialect, and called `dialect` on MySQL; rebuild it with the current SDK (wasmig:migration@0.4.0) to run it on MySQL"
)]
pub struct NoSuchDialect {
    /// The WIT version the component was built against.
    pub version: &'static str,
}

/// The current dialect as a frozen version knows it. A database the version has no case
/// for traps the guest: answering `postgres` (or `sqlite`) would lie, and the guest would
/// send that database another dialect's SQL.
fn frozen_dialect(dialect: Dialect, version: &'static str) -> wasmtime::Result<FrozenDialect> {
    match dialect {
        Dialect::Postgres => Ok(FrozenDialect::Postgres),
        Dialect::Sqlite => Ok(FrozenDialect::Sqlite),
        Dialect::Mysql => Err(wasmtime::Error::new(NoSuchDialect { version })),
    }
}

/// Implements a frozen version's `sql` (with its resources) and `log` on [`GuestState`] by
/// delegating to the current ones.
macro_rules! frozen_sql_and_log {
    ($v:ident, $version:literal) => {
        impl $v::sql::Host for GuestState {
            frozen_sql_and_log!(@dialect $v, $version);

            async fn execute(
                &mut self,
                statement: String,
                params: Vec<Value>,
            ) -> wasmtime::Result<SqlResult<u64>> {
                sql::Host::execute(self, statement, params).await
            }

            async fn query(
                &mut self,
                statement: String,
                params: Vec<Value>,
            ) -> wasmtime::Result<SqlResult<QueryResult>> {
                sql::Host::query(self, statement, params).await
            }

            async fn batch(&mut self, script: String) -> wasmtime::Result<SqlResult<()>> {
                sql::Host::batch(self, script).await
            }

            async fn execute_many(
                &mut self,
                statement: String,
                rows: Vec<Vec<Value>>,
            ) -> wasmtime::Result<SqlResult<u64>> {
                sql::Host::execute_many(self, statement, rows).await
            }

            async fn open_cursor(
                &mut self,
                statement: String,
                params: Vec<Value>,
            ) -> wasmtime::Result<SqlResult<Resource<$v::sql::Cursor>>> {
                Ok(sql::Host::open_cursor(self, statement, params)
                    .await?
                    .map(retype))
            }

            async fn begin_savepoint(
                &mut self,
            ) -> wasmtime::Result<SqlResult<Resource<$v::sql::Savepoint>>> {
                Ok(sql::Host::begin_savepoint(self).await?.map(retype))
            }

            frozen_sql_and_log!(@copy_in $v);
        }

        impl $v::sql::HostCursor for GuestState {
            async fn columns(
                &mut self,
                cursor: Resource<$v::sql::Cursor>,
            ) -> wasmtime::Result<Vec<Column>> {
                sql::HostCursor::columns(self, retype(cursor)).await
            }

            async fn next(
                &mut self,
                cursor: Resource<$v::sql::Cursor>,
                max_rows: u32,
            ) -> wasmtime::Result<SqlResult<Vec<Vec<Value>>>> {
                sql::HostCursor::next(self, retype(cursor), max_rows).await
            }

            async fn drop(&mut self, cursor: Resource<$v::sql::Cursor>) -> wasmtime::Result<()> {
                sql::HostCursor::drop(self, retype(cursor)).await
            }
        }

        impl $v::sql::HostSavepoint for GuestState {
            async fn release(
                &mut self,
                savepoint: Resource<$v::sql::Savepoint>,
            ) -> wasmtime::Result<SqlResult<()>> {
                sql::HostSavepoint::release(self, retype(savepoint)).await
            }

            async fn rollback(
                &mut self,
                savepoint: Resource<$v::sql::Savepoint>,
            ) -> wasmtime::Result<SqlResult<()>> {
                sql::HostSavepoint::rollback(self, retype(savepoint)).await
            }

            async fn drop(
                &mut self,
                savepoint: Resource<$v::sql::Savepoint>,
            ) -> wasmtime::Result<()> {
                sql::HostSavepoint::drop(self, retype(savepoint)).await
            }
        }

        impl $v::log::Host for GuestState {
            async fn log(
                &mut self,
                level: $v::log::Level,
                message: String,
            ) -> wasmtime::Result<()> {
                use $v::log::Level as Old;
                let level = match level {
                    Old::Trace => log::Level::Trace,
                    Old::Debug => log::Level::Debug,
                    Old::Info => log::Level::Info,
                    Old::Warn => log::Level::Warn,
                    Old::Error => log::Level::Error,
                };
                log::Host::log(self, level, message).await
            }

            async fn progress(&mut self, done: u64, total: Option<u64>) -> wasmtime::Result<()> {
                log::Host::progress(self, done, total).await
            }
        }
    };
    // `mysql` came with 0.3.0, whose dialect is the current one.
    (@dialect v0_3_0, $version:literal) => {
        async fn dialect(&mut self) -> wasmtime::Result<Dialect> {
            sql::Host::dialect(self).await
        }
    };
    (@dialect $v:ident, $version:literal) => {
        async fn dialect(&mut self) -> wasmtime::Result<FrozenDialect> {
            frozen_dialect(sql::Host::dialect(self).await?, $version)
        }
    };
    // `copy-in` came with 0.2.0.
    (@copy_in v0_1_0) => {};
    (@copy_in $v:ident) => {
        async fn copy_in(
            &mut self,
            table: String,
            columns: Vec<String>,
            rows: Vec<Vec<Value>>,
        ) -> wasmtime::Result<SqlResult<u64>> {
            sql::Host::copy_in(self, table, columns, rows).await
        }
    };
}

frozen_sql_and_log!(v0_3_0, "0.3.0");
frozen_sql_and_log!(v0_2_0, "0.2.0");
frozen_sql_and_log!(v0_1_0, "0.1.0");

impl v0_3_0::batch::Host for GuestState {
    async fn checkpoint(&mut self) -> wasmtime::Result<Option<String>> {
        batch::Host::checkpoint(self).await
    }

    async fn next_batch(&mut self, checkpoint: String) -> wasmtime::Result<()> {
        batch::Host::next_batch(self, checkpoint).await
    }
}

impl v0_2_0::batch::Host for GuestState {
    async fn checkpoint(&mut self) -> wasmtime::Result<Option<String>> {
        batch::Host::checkpoint(self).await
    }

    async fn next_batch(&mut self, checkpoint: String) -> wasmtime::Result<()> {
        batch::Host::next_batch(self, checkpoint).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frozen_version_gets_its_own_dialect_and_a_trap_for_mysql() {
        assert_eq!(
            frozen_dialect(Dialect::Postgres, "0.2.0").unwrap(),
            FrozenDialect::Postgres
        );
        assert_eq!(
            frozen_dialect(Dialect::Sqlite, "0.1.0").unwrap(),
            FrozenDialect::Sqlite
        );
        let trap = frozen_dialect(Dialect::Mysql, "0.2.0").unwrap_err();
        let refused = trap.downcast_ref::<NoSuchDialect>().unwrap();
        assert_eq!(refused.version, "0.2.0");
        let message = trap.to_string();
        assert!(
            message.contains("wasmig:migration@0.2.0") && message.contains("rebuild"),
            "{message}"
        );
    }
}

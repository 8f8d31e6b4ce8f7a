//! The frozen 0.1.0 interfaces: the same functions as the current ones, minus what 0.2.0
//! added. Each delegates to the current implementation, so the two versions cannot drift
//! apart.

use super::*;

impl v0_1_0::sql::Host for GuestState {
    async fn dialect(&mut self) -> wasmtime::Result<Dialect> {
        sql::Host::dialect(self).await
    }

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
    ) -> wasmtime::Result<SqlResult<Resource<v0_1_0::sql::Cursor>>> {
        Ok(sql::Host::open_cursor(self, statement, params)
            .await?
            .map(retype))
    }

    async fn begin_savepoint(
        &mut self,
    ) -> wasmtime::Result<SqlResult<Resource<v0_1_0::sql::Savepoint>>> {
        Ok(sql::Host::begin_savepoint(self).await?.map(retype))
    }
}

impl v0_1_0::sql::HostCursor for GuestState {
    async fn columns(
        &mut self,
        cursor: Resource<v0_1_0::sql::Cursor>,
    ) -> wasmtime::Result<Vec<Column>> {
        sql::HostCursor::columns(self, retype(cursor)).await
    }

    async fn next(
        &mut self,
        cursor: Resource<v0_1_0::sql::Cursor>,
        max_rows: u32,
    ) -> wasmtime::Result<SqlResult<Vec<Vec<Value>>>> {
        sql::HostCursor::next(self, retype(cursor), max_rows).await
    }

    async fn drop(&mut self, cursor: Resource<v0_1_0::sql::Cursor>) -> wasmtime::Result<()> {
        sql::HostCursor::drop(self, retype(cursor)).await
    }
}

impl v0_1_0::sql::HostSavepoint for GuestState {
    async fn release(
        &mut self,
        savepoint: Resource<v0_1_0::sql::Savepoint>,
    ) -> wasmtime::Result<SqlResult<()>> {
        sql::HostSavepoint::release(self, retype(savepoint)).await
    }

    async fn rollback(
        &mut self,
        savepoint: Resource<v0_1_0::sql::Savepoint>,
    ) -> wasmtime::Result<SqlResult<()>> {
        sql::HostSavepoint::rollback(self, retype(savepoint)).await
    }

    async fn drop(&mut self, savepoint: Resource<v0_1_0::sql::Savepoint>) -> wasmtime::Result<()> {
        sql::HostSavepoint::drop(self, retype(savepoint)).await
    }
}

impl v0_1_0::log::Host for GuestState {
    async fn log(&mut self, level: v0_1_0::log::Level, message: String) -> wasmtime::Result<()> {
        use v0_1_0::log::Level as Old;
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

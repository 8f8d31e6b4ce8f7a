//! The current WIT version's interfaces (0.4.0) for a guest: `sql` with its cursor and
//! savepoint resources, `log`, `batch`. Each function translates the call onto the step's
//! session, under the deadline (`db_call!`).
//!
//! Not here: the frozen 0.3.0, 0.2.0 and 0.1.0 interfaces (`legacy`), the guest's state
//! and limits (`host`).

use super::*;

/// The body of the calls that run one statement (`execute`, `query` and their column
/// forms): the call on the step's session under the deadline (`db_call!`), its rows counted
/// toward the throttle when it writes (`wrote`), journaled and captured like every
/// statement. `params` is evaluated only for the journal.
macro_rules! journaled {
    ($self:ident, $call:literal, $statement:ident, $params:expr, |$s:ident| $run:expr, $count:expr $(, $wrote:ident)?) => {{
        let started = $self.journal_before().await;
        let result = db_call!($self, |$s| $run);
        $($self.$wrote(&result, $count);)?
        if let Some(started) = started {
            let params: Vec<Value> = $params;
            let (count, error) = outcome(&result, $count);
            let entry = Journaled {
                call: $call,
                sql: &$statement,
                params: &params,
                param_rows: None,
                rows: count,
                error,
            };
            let observed = $self.journal_after(started, entry).await;
            $self.capture_statement(
                $call,
                &$statement,
                || vec![params.clone()],
                &result,
                $count,
                observed.as_ref(),
            );
        }
        result
    }};
}

impl types::Host for GuestState {}

impl sql::Host for GuestState {
    async fn dialect(&mut self) -> wasmtime::Result<Dialect> {
        Ok(self.dialect)
    }

    async fn execute(
        &mut self,
        statement: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<SqlResult<u64>> {
        journaled!(
            self,
            "execute",
            statement,
            params.clone(),
            |s| s.execute(&statement, &params),
            |n: &u64| *n,
            wrote
        )
    }

    async fn query(
        &mut self,
        statement: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<SqlResult<QueryResult>> {
        journaled!(
            self,
            "query",
            statement,
            params.clone(),
            |s| s.query(&statement, &params),
            |r: &QueryResult| r.rows.len() as u64
        )
    }

    async fn batch(&mut self, script: String) -> wasmtime::Result<SqlResult<()>> {
        let started = self.journal_before().await;
        let result = db_call!(self, |s| s.batch(&script));
        if let Some(started) = started {
            let (_, error) = outcome(&result, |_: &()| 0);
            let entry = Journaled {
                call: "batch",
                sql: &script,
                params: &[],
                param_rows: None,
                rows: None,
                error,
            };
            self.journal_after(started, entry).await;
            if self.captures() && matches!(result, Ok(Ok(()))) {
                self.capture(journal::CapturedCall::Script(script.clone()));
            }
        }
        result
    }

    async fn execute_many(
        &mut self,
        statement: String,
        rows: Vec<Vec<Value>>,
    ) -> wasmtime::Result<SqlResult<u64>> {
        let started = self.journal_before().await;
        let result = db_call!(self, |s| s.execute_many(&statement, &rows));
        self.wrote(&result, |n: &u64| *n);
        if let Some(started) = started {
            let (count, error) = outcome(&result, |n: &u64| *n);
            let entry = Journaled {
                call: "execute-many",
                sql: &statement,
                params: &[],
                param_rows: Some(rows.len()),
                rows: count,
                error,
            };
            let observed = self.journal_after(started, entry).await;
            self.capture_statement(
                "execute-many",
                &statement,
                || rows.clone(),
                &result,
                |n: &u64| *n,
                observed.as_ref(),
            );
        }
        result
    }

    async fn open_cursor(
        &mut self,
        statement: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<SqlResult<Resource<sql::Cursor>>> {
        let started = self.journal_before().await;
        let opened = db_call!(self, |s| s.open_cursor(&statement, &params));
        if let Some(started) = started {
            let (_, error) = outcome(&opened, |_: &CursorState| 0);
            let entry = Journaled {
                call: "open-cursor",
                sql: &statement,
                params: &params,
                param_rows: None,
                rows: None,
                error,
            };
            let observed = self.journal_after(started, entry).await;
            self.capture_statement(
                "open-cursor",
                &statement,
                || vec![params.clone()],
                &opened,
                |_: &CursorState| 0,
                observed.as_ref(),
            );
        }
        let opened: SqlResult<CursorState> = opened?;
        match opened {
            Ok(state) => {
                let savepoint = self.savepoints.last_mut().map(|frame| {
                    frame.cursors = true;
                    frame.id
                });
                Ok(Ok(retype(
                    self.table.push(CursorHandle { state, savepoint })?,
                )))
            }
            Err(e) => Ok(Err(e)),
        }
    }

    async fn begin_savepoint(&mut self) -> wasmtime::Result<SqlResult<Resource<sql::Savepoint>>> {
        self.next_id += 1;
        let id = self.next_id;
        let name = format!("wasmig_sp_{id}");
        let begun: SqlResult<()> = db_call!(self, |s| s.savepoint(&name))?;
        if let Err(e) = begun {
            return Ok(Err(e));
        }
        self.savepoints.push(Frame {
            id,
            name,
            failed: None,
            cursors: false,
        });
        self.capture(journal::CapturedCall::Savepoint { id, ended: None });
        Ok(Ok(retype(self.table.push(SavepointHandle { id })?)))
    }

    async fn copy_in(
        &mut self,
        table: String,
        columns: Vec<String>,
        rows: Vec<Vec<Value>>,
    ) -> wasmtime::Result<SqlResult<u64>> {
        let started = self.journal_before().await;
        let result = db_call!(self, |s| s.copy_in(&table, &columns, &rows));
        self.wrote(&result, |n: &u64| *n);
        if let Some(started) = started {
            let (count, error) = outcome(&result, |n: &u64| *n);
            let entry = Journaled {
                call: "copy-in",
                sql: &format!("COPY {table} ({}) FROM STDIN", columns.join(", ")),
                params: &[],
                param_rows: Some(rows.len()),
                rows: count,
                error,
            };
            self.journal_after(started, entry).await;
            if self.captures() && matches!(result, Ok(Ok(_))) {
                self.capture(journal::CapturedCall::Copy {
                    table: table.clone(),
                    columns: columns.clone(),
                    rows: rows.clone(),
                });
            }
        }
        result
    }

    async fn query_columns(
        &mut self,
        statement: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<SqlResult<ColumnResult>> {
        journaled!(
            self,
            "query-columns",
            statement,
            params.clone(),
            |s| s.query_columns(&statement, &params),
            |r: &ColumnResult| u64::from(r.rows)
        )
    }

    async fn execute_columns(
        &mut self,
        statement: String,
        params: Vec<ColumnValues>,
    ) -> wasmtime::Result<SqlResult<u64>> {
        // Journaled as the arrays the columns bind as (none when they do not hold together:
        // the call was refused).
        journaled!(
            self,
            "execute-columns",
            statement,
            wasmig_db::columns::into_arrays("execute-columns", &params).unwrap_or_default(),
            |s| s.execute_columns(&statement, &params),
            |n: &u64| *n,
            wrote
        )
    }

    async fn copy_in_columns(
        &mut self,
        table: String,
        columns: Vec<String>,
        values: Vec<ColumnValues>,
    ) -> wasmtime::Result<SqlResult<u64>> {
        let started = self.journal_before().await;
        let result = db_call!(self, |s| s.copy_in_columns(&table, &columns, &values));
        self.wrote(&result, |n: &u64| *n);
        if let Some(started) = started {
            let (count, error) = outcome(&result, |n: &u64| *n);
            let rows = values.first().map(|c| wasmig_db::columns::rows_of(&c.data));
            let entry = Journaled {
                call: "copy-in-columns",
                sql: &format!("COPY {table} ({}) FROM STDIN", columns.join(", ")),
                params: &[],
                param_rows: Some(rows.unwrap_or(0)),
                rows: count,
                error,
            };
            self.journal_after(started, entry).await;
            if self.captures() && matches!(result, Ok(Ok(_))) {
                // Checked by the call that succeeded.
                let rows = wasmig_db::columns::into_rows("copy-in-columns", &values)
                    .expect("the columns were checked by the call");
                self.capture(journal::CapturedCall::Copy {
                    table: table.clone(),
                    columns: columns.clone(),
                    rows,
                });
            }
        }
        result
    }
}

impl sql::HostCursor for GuestState {
    async fn columns(&mut self, cursor: Resource<sql::Cursor>) -> wasmtime::Result<Vec<Column>> {
        let cursor = retype::<CursorHandle, _>(cursor);
        Ok(self.table.get(&cursor)?.state.columns.clone())
    }

    async fn next(
        &mut self,
        cursor: Resource<sql::Cursor>,
        max_rows: u32,
    ) -> wasmtime::Result<SqlResult<Vec<Vec<Value>>>> {
        let cursor = retype::<CursorHandle, _>(cursor);
        if let Some(err) = self.aborted() {
            return Ok(Err(err));
        }
        let opened_in = self.table.get(&cursor)?.savepoint;
        if self.closed_by_rollback(opened_in) {
            self.table.get_mut(&cursor)?.state.mark_done();
            return Ok(Err(SqlError::wasmig(
                "STATE",
                "this cursor was closed by rolling back the savepoint it was opened in; open it again after the rollback",
            )));
        }
        // Take the cursor state out of the table for the duration of the call, so the
        // session and the cursor can be borrowed together.
        let handle = self.table.get_mut(&cursor)?;
        let mut state = std::mem::replace(&mut handle.state, CursorState::finished());
        let started = self.journal_before().await;
        let result: wasmtime::Result<SqlResult<Vec<Vec<Value>>>> =
            db_call!(self, |s| s.fetch(&mut state, max_rows.clamp(1, 100_000)));
        self.table.get_mut(&cursor)?.state = state;
        if let Some(started) = started {
            let (count, error) = outcome(&result, |r: &Vec<Vec<Value>>| r.len() as u64);
            let entry = Journaled {
                call: "fetch",
                sql: "",
                params: &[],
                param_rows: None,
                rows: count,
                error,
            };
            self.journal_after(started, entry).await;
            if let (true, Some(n)) = (self.captures(), count) {
                self.capture(journal::CapturedCall::Fetch(n));
            }
        }
        result
    }

    async fn drop(&mut self, cursor: Resource<sql::Cursor>) -> wasmtime::Result<()> {
        let cursor = retype::<CursorHandle, _>(cursor);
        let mut handle = self.table.delete(cursor)?;
        // A cursor its savepoint's rollback destroyed must not be closed: PostgreSQL would
        // answer 34000 and abort the transaction. In a failed transaction or savepoint the
        // CLOSE would fail too; the rollback that must follow closes the cursor.
        if handle.state.is_done()
            || self.closed_by_rollback(handle.savepoint)
            || self.aborted().is_some()
        {
            return Ok(());
        }
        let canceller = Arc::clone(&self.canceller);
        let deadline = self.deadline;
        let _under_way = super::DbCall::begin(&self.db_calls);
        let session = self.session();
        match against_deadline(
            session.close_cursor(&mut handle.state),
            deadline,
            &*canceller,
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            // The guest cannot see this error, but the transaction (or savepoint) did: it
            // fails the step unless a savepoint around it is rolled back.
            Ok(Err(e)) => {
                self.note_error(&e);
                Ok(())
            }
            Err(limit) => {
                self.deadline_hit = true;
                Err(wasmtime::Error::new(limit))
            }
        }
    }
}

impl GuestState {
    /// Ends the savepoint `id` (and any inner ones the guest left open).
    async fn end_savepoint(&mut self, id: u64, release: bool) -> wasmtime::Result<SqlResult<()>> {
        let Some(pos) = self.savepoints.iter().position(|f| f.id == id) else {
            return Ok(Err(SqlError::wasmig(
                "STATE",
                "this savepoint was already released or rolled back",
            )));
        };
        if release
            && let Some(failed) = self.savepoints[pos..].iter().find_map(|f| f.failed.clone())
        {
            return Ok(Err(SqlError::wasmig(
                "ABORTED",
                format!(
                    "cannot release a savepoint after a failed statement ({}); roll it back instead",
                    failed.message
                ),
            )));
        }
        let name = self.savepoints[pos].name.clone();
        // Inner frames end with this one: the database releases or rolls them back too.
        let ended: Vec<Frame> = self.savepoints.drain(pos..).collect();
        let canceller = Arc::clone(&self.canceller);
        let deadline = self.deadline;
        let _under_way = super::DbCall::begin(&self.db_calls);
        let session = self.session();
        let fut = async {
            if release {
                session.release_savepoint(&name).await
            } else {
                session.rollback_to_savepoint(&name).await
            }
        };
        match against_deadline(fut, deadline, &*canceller).await {
            Ok(Ok(())) => {
                self.forget_frames(&ended, release);
                self.capture(journal::CapturedCall::Savepoint {
                    id,
                    ended: Some(!release),
                });
                Ok(Ok(()))
            }
            Ok(Err(e)) => {
                // The savepoint could not be ended: keep the failure visible to the step. After
                // a connection failure the database's savepoints are unknown (the statement
                // may have ended it before the failure), and the step fails anyway.
                if !wasmig_db::is_connection_failure(&e.code) {
                    self.savepoints.extend(ended);
                }
                self.note_error(&e);
                Ok(Err(e))
            }
            Err(limit) => {
                self.deadline_hit = true;
                Err(wasmtime::Error::new(limit))
            }
        }
    }
}

impl GuestState {
    /// Bookkeeping after savepoints ended in the database: their cursors now belong to the
    /// savepoint around them (release) or are closed (rollback), and a rollback forgives a
    /// connection failure noted inside them (the rollback itself just worked).
    fn forget_frames(&mut self, ended: &[Frame], release: bool) {
        let parent = self.savepoints.last().map(|f| f.id);
        for frame in ended.iter().filter(|f| f.cursors) {
            if release {
                self.released_into.insert(frame.id, parent);
            } else {
                self.rolled_back.insert(frame.id);
            }
        }
        if release {
            if ended.iter().any(|f| f.cursors)
                && let Some(parent) = self.savepoints.last_mut()
            {
                parent.cursors = true;
            }
        } else if let Some(id) = self.io_failure_in
            && ended.iter().any(|f| f.id == id)
        {
            self.io_failure = None;
            self.io_failure_in = None;
        }
    }
}

impl sql::HostSavepoint for GuestState {
    async fn release(
        &mut self,
        savepoint: Resource<sql::Savepoint>,
    ) -> wasmtime::Result<SqlResult<()>> {
        let savepoint = retype::<SavepointHandle, _>(savepoint);
        let id = self.table.get(&savepoint)?.id;
        self.end_savepoint(id, true).await
    }

    async fn rollback(
        &mut self,
        savepoint: Resource<sql::Savepoint>,
    ) -> wasmtime::Result<SqlResult<()>> {
        let savepoint = retype::<SavepointHandle, _>(savepoint);
        let id = self.table.get(&savepoint)?.id;
        self.end_savepoint(id, false).await
    }

    async fn drop(&mut self, savepoint: Resource<sql::Savepoint>) -> wasmtime::Result<()> {
        let savepoint = retype::<SavepointHandle, _>(savepoint);
        let id = self.table.delete(savepoint)?.id;
        if self.savepoints.iter().any(|f| f.id == id) {
            // Dropped while open: roll back, as documented in the WIT.
            let _ = self.end_savepoint(id, false).await?;
        }
        Ok(())
    }
}

impl log::Host for GuestState {
    async fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        // Guest text goes out as an event of its own target, so a subscriber can tell it
        // from wasmig's words.
        let revision = &self.revision;
        // A line no subscriber shows costs nothing, and counts for nothing.
        let shown = match level {
            log::Level::Trace => tracing::enabled!(target: "wasmig::guest", tracing::Level::TRACE),
            log::Level::Debug => tracing::enabled!(target: "wasmig::guest", tracing::Level::DEBUG),
            log::Level::Info => tracing::enabled!(target: "wasmig::guest", tracing::Level::INFO),
            log::Level::Warn => tracing::enabled!(target: "wasmig::guest", tracing::Level::WARN),
            log::Level::Error => tracing::enabled!(target: "wasmig::guest", tracing::Level::ERROR),
        };
        if !shown {
            return Ok(());
        }
        if self.logged >= super::LOG_BUDGET {
            self.log_dropped += 1;
            return Ok(());
        }
        let message = wasmig_contract::text::shown(&message);
        self.logged += message.len();
        match level {
            log::Level::Trace => tracing::trace!(target: "wasmig::guest", "[{revision}] {message}"),
            log::Level::Debug => tracing::debug!(target: "wasmig::guest", "[{revision}] {message}"),
            log::Level::Info => tracing::info!(target: "wasmig::guest", "[{revision}] {message}"),
            log::Level::Warn => tracing::warn!(target: "wasmig::guest", "[{revision}] {message}"),
            log::Level::Error => tracing::error!(target: "wasmig::guest", "[{revision}] {message}"),
        }
        Ok(())
    }

    async fn progress(&mut self, done: u64, total: Option<u64>) -> wasmtime::Result<()> {
        self.progress.update(done, total);
        self.journal_progress(done);
        Ok(())
    }
}

impl batch::Host for GuestState {
    async fn checkpoint(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(self.checkpoint.clone())
    }

    async fn next_batch(&mut self, checkpoint: String) -> wasmtime::Result<()> {
        self.next_batch = Some(checkpoint);
        Ok(())
    }
}

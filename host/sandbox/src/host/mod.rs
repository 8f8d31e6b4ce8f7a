//! The host side of the WIT `sql`, `log` and `batch` interfaces: the only module
//! implementing the generated `Host` traits. It translates each guest call onto the
//! migration's [`Session`], and enforces these rules on the way:
//!
//! - **Deadline inside host calls.** The epoch deadline only fires while wasm runs, so each
//!   database call races the deadline; when it passes, the statement is cancelled on the
//!   database side and the guest is trapped with [`LimitTrap::Deadline`].
//! - **No silent rollback.** An SQL error the guest does not handle inside a savepoint is
//!   remembered; further statements get `WASMIG-ABORTED` and the step fails even if the guest
//!   returns success (PostgreSQL would otherwise commit nothing and report success).
//! - **Cursors die with their savepoint.** PostgreSQL destroys a cursor opened inside a
//!   savepoint that is rolled back; the host tracks that (on both backends, so a migration
//!   behaves alike), refuses further reads of such a cursor and never sends it a `CLOSE`,
//!   which would fail and abort the transaction.
//!
//! Blame: SQL errors go back to the guest as values; only limits, host bugs and a call that
//! cannot be answered truthfully in the guest's WIT version (an old component asking for
//! the dialect on MySQL, [`NoSuchDialect`]) trap.
//!
//! Every released WIT version is served here: the frozen 0.2.0 and 0.1.0 interfaces
//! delegate to the current ones (their types are the same but for the dialect, see
//! `wasmig_contract::frozen_types`), so an old component gets exactly the behaviour of a
//! new one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::journal::{self, Entry, Journal};
use crate::progress::Progress;
use wasmig_contract::current::{batch, log, sql, types};
use wasmig_contract::v0_1_0;
use wasmig_contract::{Column, ColumnResult, ColumnValues, Dialect, QueryResult, SqlError, Value};
use wasmig_db::{Canceller, CursorState, Observed, Session, SqlResult};

/// The host side of a guest's `cursor` resource.
#[derive(Debug)]
pub struct CursorHandle {
    /// The database cursor; closed when the guest drops the resource.
    pub state: CursorState,
    /// The innermost savepoint open when the cursor was opened (`None`: the transaction
    /// itself); rolling it back closes the cursor.
    savepoint: Option<u64>,
}

/// The same table entry under another type: the contract's generated resource types (one
/// per WIT version) and the host's handles below name one slot of [`GuestState`]'s
/// resource table, which checks the type stored there on every access.
fn retype<T: 'static, U: 'static>(resource: Resource<U>) -> Resource<T> {
    if resource.owned() {
        Resource::new_own(resource.rep())
    } else {
        Resource::new_borrow(resource.rep())
    }
}

/// The host side of a guest's `savepoint` resource.
#[derive(Debug)]
pub struct SavepointHandle {
    /// Identifies the frame in [`GuestState`]'s savepoint stack.
    id: u64,
}

/// A sandbox limit that stopped the guest; carried as the trap's error.
#[derive(Debug, thiserror::Error)]
pub enum LimitTrap {
    /// The wall-clock deadline passed during a host call.
    #[error("deadline exceeded")]
    Deadline,
    /// The guest tried to grow its memory past the cap.
    #[error("memory limit of {0} bytes exceeded")]
    Memory(u64),
    /// The guest tried to grow its tables past [`TABLE_ELEMENTS_CAP`].
    #[error("table limit of {0} elements exceeded")]
    Tables(u64),
}

/// One open savepoint.
#[derive(Debug)]
struct Frame {
    id: u64,
    name: String,
    /// The first error since the savepoint began, forgiven by a rollback.
    failed: Option<SqlError>,
    /// Whether a cursor was opened in it (or in an inner savepoint released into it).
    cursors: bool,
}

/// Elements allowed in all of a guest's tables together. Each takes a pointer's worth of
/// host memory (wasmtime's `ResourceLimiter::table_growing` docs), so this is 8 MiB on a
/// 64-bit host: plenty for indirect calls, and not a way around the memory cap.
pub(crate) const TABLE_ELEMENTS_CAP: u64 = 1_000_000;

/// Caps the guest's linear memories (all of them together) and tables (all together).
///
/// The arithmetic saturates: sizes come from the guest (a 64-bit memory can ask for nearly
/// `usize::MAX` bytes), and a wrapped sum would let it past the cap.
#[derive(Debug)]
pub(crate) struct Limiter {
    /// The cap in bytes for all memories together.
    pub(crate) memory_cap: u64,
    /// Bytes currently reserved by all memories.
    reserved: u64,
    /// Bytes of the growth `memory_growing` last allowed, taken back if wasmtime then
    /// reports that this growth failed.
    pending: u64,
    /// Elements currently reserved by all tables.
    table_elements: u64,
    /// Set when a memory growth was refused.
    pub(crate) exceeded: bool,
    /// Set when a table growth was refused.
    pub(crate) tables_exceeded: bool,
}

impl Limiter {
    /// Bytes reserved by all memories: their peak, since linear memory never shrinks.
    pub(crate) fn reserved(&self) -> u64 {
        self.reserved
    }

    pub(crate) fn new(memory_cap: u64) -> Self {
        Limiter {
            memory_cap,
            reserved: 0,
            pending: 0,
            table_elements: 0,
            exceeded: false,
            tables_exceeded: false,
        }
    }
}

/// `desired - current` as a count that cannot wrap.
fn growth(current: usize, desired: usize) -> u64 {
    u64::try_from(desired.saturating_sub(current)).unwrap_or(u64::MAX)
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.pending = 0;
        // wasmtime refuses a growth past the memory's maximum after asking; refusing it here
        // keeps it out of the count (`memory.grow` returns -1, as the spec says).
        if max.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        let growth = growth(current, desired);
        let total = self.reserved.saturating_add(growth);
        if total > self.memory_cap {
            self.exceeded = true;
            return Err(wasmtime::Error::new(LimitTrap::Memory(self.memory_cap)));
        }
        self.reserved = total;
        self.pending = growth;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        // wasmtime 48 also calls this, without asking `memory_growing` first, for a size the
        // memory's type cannot represent (`vm/memory.rs`, "memory growth exceeds memory
        // type's limits"). Nothing was reserved for that one, and `pending` may be an earlier
        // growth that succeeded, so it must stay counted. A unit test pins this message.
        let unasked = error
            .to_string()
            .contains("memory growth exceeds memory type's limits");
        if !unasked {
            self.reserved = self.reserved.saturating_sub(self.pending);
        }
        self.pending = 0;
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // As for memories. With that refused here, a growth allowed below cannot fail later
        // in wasmtime 48 (`vm/table.rs`), so there is no `table_grow_failed` to undo it; the
        // one call it makes without asking is for an overflowing size, never counted.
        if max.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        let total = self.table_elements.saturating_add(growth(current, desired));
        if total > TABLE_ELEMENTS_CAP {
            self.tables_exceeded = true;
            return Err(wasmtime::Error::new(LimitTrap::Tables(TABLE_ELEMENTS_CAP)));
        }
        self.table_elements = total;
        Ok(true)
    }

    fn instances(&self) -> usize {
        1_000
    }

    fn memories(&self) -> usize {
        100
    }

    fn tables(&self) -> usize {
        1_000
    }
}

/// Everything a guest's store holds.
///
/// Created by `sandbox::Sandbox::run` for one call of `upgrade` or `downgrade` and dropped
/// right after it: a trapped instance cannot be entered again, so nothing is reused.
pub struct GuestState {
    /// The migration's transaction. Moved in by `run`, taken back out when the call ends
    /// (to commit or roll back); `None` only after that.
    pub(crate) session: Option<Box<dyn Session>>,
    canceller: Arc<dyn Canceller>,
    dialect: Dialect,
    table: ResourceTable,
    wasi: WasiCtx,
    pub(crate) limiter: Limiter,
    revision: String,
    deadline: Instant,
    /// The first SQL error not handled inside a savepoint.
    pub(crate) unhandled: Option<SqlError>,
    /// The first statement the untrusted SQL policy refused (`WASMIG-POLICY`): the step
    /// fails with it even when the guest handled the error, so that a migration cannot
    /// probe the policy and carry on as though its statement had run.
    pub(crate) policy_refused: Option<SqlError>,
    /// The first connection-level failure (blamed on the host, not the guest).
    pub(crate) io_failure: Option<SqlError>,
    /// The innermost savepoint open when `io_failure` happened: rolling it back successfully
    /// shows the connection works, and forgives it.
    io_failure_in: Option<u64>,
    pub(crate) deadline_hit: bool,
    /// A call ended the transaction ([`Session::transaction_ended`]): the guest was
    /// stopped there.
    pub(crate) transaction_ended: bool,
    savepoints: Vec<Frame>,
    next_id: u64,
    /// Savepoints with cursors that were rolled back: their cursors are closed.
    rolled_back: HashSet<u64>,
    /// Savepoints with cursors that were released, and the savepoint their cursors then
    /// belong to (`None`: the transaction). Only savepoints with cursors are kept here.
    released_into: HashMap<u64, Option<u64>>,
    /// The step's progress, moved in by `run` for the call and taken back after it, so one
    /// bar spans every batch of a step.
    pub(crate) progress: Progress,
    /// The checkpoint this call starts from (`batch.checkpoint`).
    checkpoint: Option<String>,
    /// The checkpoint the guest asked the next batch to start from (`batch.next-batch`).
    pub(crate) next_batch: Option<String>,
    pub(crate) stdout: MemoryOutputPipe,
    pub(crate) stderr: MemoryOutputPipe,
    /// The run's journal, when it keeps one, with the call's direction.
    journal: Option<(Arc<Journal>, &'static str)>,
    /// What the server counted of the transaction after the last journaled call.
    journal_seen: Option<Observed>,
    /// The step's row rate, if `[throttle]` sets one: waited on before each SQL call.
    rate: Option<Arc<crate::throttle::RowRate>>,
    /// How many database calls are under way ([`DbCall`]): the only waits in the host
    /// that must not be cut short at the deadline (each races it with a grace period to
    /// cancel its statement). `Sandbox::run` reads it from outside the store.
    pub(crate) db_calls: Arc<AtomicUsize>,
    /// Bytes of log lines passed on in this call, as shown (see [`LOG_BUDGET`]).
    pub(crate) logged: usize,
    /// Log lines dropped past [`LOG_BUDGET`] in this call.
    pub(crate) log_dropped: u64,
}

/// What a call may log through `log.log`, in bytes of lines as shown (each line is cut at
/// 4,096 characters already): as much as its stdout and stderr each keep. Past it, lines
/// are dropped and counted, and the call's end says how many, so that a migration looping
/// on `log` until its deadline cannot flood the terminal or a CI job's log.
pub(crate) const LOG_BUDGET: usize = OUTPUT_CAPACITY;

/// One database call under way, counted in [`GuestState::db_calls`] until dropped (the
/// call returned, or its future was dropped).
pub(crate) struct DbCall(Arc<AtomicUsize>);

impl DbCall {
    pub(crate) fn begin(calls: &Arc<AtomicUsize>) -> DbCall {
        calls.fetch_add(1, Ordering::SeqCst);
        DbCall(Arc::clone(calls))
    }
}

impl Drop for DbCall {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The code of a statement the untrusted SQL policy refused (`wasmig_db::policy`).
const POLICY_REFUSED: &str = "WASMIG-POLICY";

/// Guest stdout/stderr kept per call; a guest writing more is trapped.
const OUTPUT_CAPACITY: usize = 1024 * 1024;

impl GuestState {
    pub(crate) fn new(
        session: Box<dyn Session>,
        revision: &str,
        deadline: Instant,
        memory_cap: u64,
        progress: Progress,
        checkpoint: Option<String>,
        journal: Option<(Arc<Journal>, &'static str)>,
    ) -> Self {
        let stdout = MemoryOutputPipe::new(OUTPUT_CAPACITY);
        let stderr = MemoryOutputPipe::new(OUTPUT_CAPACITY);
        // Deny by default: no preopened directories, no environment, no arguments, stdin
        // closed, no TCP, no UDP, no name lookup. Clocks and randomness stay available.
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        GuestState {
            canceller: session.canceller(),
            dialect: session.dialect(),
            session: Some(session),
            table: ResourceTable::new(),
            wasi,
            limiter: Limiter::new(memory_cap),
            revision: revision.to_owned(),
            deadline,
            unhandled: None,
            policy_refused: None,
            io_failure: None,
            io_failure_in: None,
            deadline_hit: false,
            transaction_ended: false,
            savepoints: Vec::new(),
            next_id: 0,
            rolled_back: HashSet::new(),
            released_into: HashMap::new(),
            progress,
            checkpoint,
            next_batch: None,
            stdout,
            stderr,
            db_calls: Arc::new(AtomicUsize::new(0)),
            logged: 0,
            log_dropped: 0,
            journal,
            journal_seen: None,
            rate: None,
        }
    }

    /// The same state, throttled to the step's row rate.
    pub(crate) fn with_rate(mut self, rate: Option<Arc<crate::throttle::RowRate>>) -> Self {
        self.rate = rate;
        self
    }

    /// Waits, before a SQL call, until the rows the step wrote fit its row rate (never past
    /// the call's deadline, which then stops the call as it would any other).
    /// (Takes what it needs rather than `&self`, which the future would hold across its
    /// wait, and `GuestState` is not `Sync`.)
    async fn throttle(rate: Option<Arc<crate::throttle::RowRate>>, deadline: Instant) {
        if let Some(rate) = rate {
            rate.wait(deadline).await;
        }
    }

    /// Counts rows a call wrote against the step's row rate.
    fn wrote<T>(&self, result: &wasmtime::Result<SqlResult<T>>, rows: impl Fn(&T) -> u64) {
        if let (Some(rate), Ok(Ok(value))) = (&self.rate, result) {
            rate.wrote(rows(value));
        }
    }

    /// The error that makes the transaction unusable right now, if any.
    fn aborted(&self) -> Option<SqlError> {
        let first = match self.savepoints.last() {
            Some(frame) => frame.failed.as_ref(),
            None => self.unhandled.as_ref(),
        }?;
        Some(SqlError::wasmig(
            "ABORTED",
            format!(
                "an earlier statement failed ({}); roll back to a savepoint to continue",
                first.message
            ),
        ))
    }

    /// Remembers a failed statement against the innermost savepoint, or the transaction.
    fn note_error(&mut self, error: &SqlError) {
        if error.code == POLICY_REFUSED && self.policy_refused.is_none() {
            self.policy_refused = Some(error.clone());
        }
        if wasmig_db::is_connection_failure(&error.code) && self.io_failure.is_none() {
            self.io_failure = Some(error.clone());
            self.io_failure_in = self.savepoints.last().map(|f| f.id);
        }
        let slot = match self.savepoints.last_mut() {
            Some(frame) => &mut frame.failed,
            None => &mut self.unhandled,
        };
        if slot.is_none() {
            *slot = Some(error.clone());
        }
    }

    /// The first unhandled error at the end of the call, including one left inside a
    /// savepoint the guest never closed.
    pub(crate) fn pending_error(&self) -> Option<&SqlError> {
        self.unhandled
            .as_ref()
            .or_else(|| self.savepoints.iter().find_map(|f| f.failed.as_ref()))
    }

    /// Whether rolling back a savepoint closed a cursor opened while `opened_in` was the
    /// innermost one: that savepoint, or one it was released into, was rolled back.
    fn closed_by_rollback(&self, opened_in: Option<u64>) -> bool {
        let mut frame = opened_in;
        while let Some(id) = frame {
            if self.rolled_back.contains(&id) {
                return true;
            }
            match self.released_into.get(&id) {
                Some(parent) => frame = *parent,
                None => return false,
            }
        }
        false
    }

    fn session(&mut self) -> &mut dyn Session {
        self.session
            .as_deref_mut()
            .expect("the session is present during a call")
    }
}

/// How long a cancelled call gets to unwind before its connection is ended.
pub(crate) const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// How often the cancel is sent again during the grace period.
const CANCEL_RESEND: Duration = Duration::from_millis(250);

/// How long sending one cancel may take (a fresh connection may be needed).
const CANCEL_TIMEOUT: Duration = Duration::from_secs(1);

/// How long ending the connection, then the call's unwinding, may take each.
const TERMINATE_WAIT: Duration = Duration::from_secs(2);

/// The longest a database call may outlive the deadline: the grace period, then ending the
/// connection and waiting for the call to return.
pub(crate) const UNWIND_LIMIT: Duration =
    Duration::from_secs(CANCEL_GRACE.as_secs() + 2 * TERMINATE_WAIT.as_secs());

/// Races a database future against the deadline; on expiry cancels the statement, gives it
/// a moment to unwind (so the connection stays consistent), and reports the deadline.
///
/// A cancel only stops a statement running when it arrives: one landing between two
/// statements of a call (a per-row `execute-many`, a cursor's FETCH then CLOSE) is lost, so
/// it is sent again every [`CANCEL_RESEND`] until the call returns. Should the call outlive
/// [`CANCEL_GRACE`], its connection is ended (the transaction is lost with it, which is
/// what a deadline means anyway).
pub async fn against_deadline<F, T>(
    fut: F,
    deadline: Instant,
    canceller: &dyn Canceller,
) -> Result<T, LimitTrap>
where
    F: std::future::Future<Output = T>,
{
    tokio::pin!(fut);
    tokio::select! {
        biased;
        out = &mut fut => return Ok(out),
        () = tokio::time::sleep_until(deadline) => {}
    }
    let give_up = Instant::now() + CANCEL_GRACE;
    while Instant::now() < give_up {
        let next = (Instant::now() + CANCEL_RESEND).min(give_up);
        let cancel = async {
            let _ = tokio::time::timeout(CANCEL_TIMEOUT, canceller.cancel()).await;
            tokio::time::sleep_until(next).await;
        };
        tokio::select! {
            biased;
            _ = &mut fut => return Err(LimitTrap::Deadline),
            () = cancel => {}
        }
    }
    tracing::warn!(
        "a statement did not stop within {} s of being cancelled; ending its connection",
        CANCEL_GRACE.as_secs()
    );
    let _ = tokio::time::timeout(TERMINATE_WAIT, canceller.terminate()).await;
    let _ = tokio::time::timeout(TERMINATE_WAIT, &mut fut).await;
    Err(LimitTrap::Deadline)
}

/// Runs one database call for the guest: refuses it while the transaction is aborted,
/// bounds it by the deadline, and records a failure.
macro_rules! db_call {
    ($state:ident, |$session:ident| $call:expr) => {{
        if let Some(err) = $state.aborted() {
            return Ok(Err(err));
        }
        GuestState::throttle($state.rate.clone(), $state.deadline).await;
        let canceller = Arc::clone(&$state.canceller);
        let deadline = $state.deadline;
        let _under_way = DbCall::begin(&$state.db_calls);
        let $session = $state.session();
        let call = async {
            let result = $call.await;
            if result.is_err() {
                $session.settle().await;
            }
            result
        };
        let result = against_deadline(call, deadline, &*canceller).await;
        // The server's word on the transaction, after every call: a statement that ended
        // it stops the guest here, before what it runs next commits on its own.
        if result.is_ok() && $state.session().transaction_ended() {
            $state.transaction_ended = true;
            return Err(wasmtime::Error::msg(
                "the call ended wasmig's transaction (the server reported it)",
            ));
        }
        match result {
            Ok(Ok(value)) => Ok(Ok(value)),
            Ok(Err(err)) => {
                $state.note_error(&err);
                Ok(Err(err))
            }
            Err(limit) => {
                $state.deadline_hit = true;
                Err(wasmtime::Error::new(limit))
            }
        }
    }};
}

/// What a journaled call did, for [`GuestState::journal_after`].
struct Journaled<'a> {
    call: &'static str,
    sql: &'a str,
    params: &'a [Value],
    param_rows: Option<usize>,
    rows: Option<u64>,
    error: Option<String>,
}

/// The rows and error of a call's result, for the journal.
fn outcome<T>(
    result: &wasmtime::Result<SqlResult<T>>,
    rows: impl Fn(&T) -> u64,
) -> (Option<u64>, Option<String>) {
    match result {
        Ok(Ok(value)) => (Some(rows(value)), None),
        Ok(Err(e)) => (None, Some(e.describe())),
        Err(trap) => (None, Some(trap.to_string())),
    }
}

impl GuestState {
    /// Before a journaled call: when it started (`None`: no journal), the server's counts
    /// read first if no call before it read them.
    async fn journal_before(&mut self) -> Option<std::time::Instant> {
        self.journal.as_ref()?;
        if self.journal_seen.is_none() {
            self.journal_seen = self.observe_now().await;
        }
        Some(std::time::Instant::now())
    }

    /// Keeps a call whole when the journal captures (`--sql`).
    fn capture(&self, call: journal::CapturedCall) {
        if let Some((journal, direction)) = &self.journal {
            journal.capture(journal::Captured {
                revision: self.revision.clone(),
                direction,
                call,
            });
        }
    }

    /// Whether the journal keeps calls whole.
    fn captures(&self) -> bool {
        self.journal.as_ref().is_some_and(|(j, _)| j.captures())
    }

    /// Keeps a statement call that succeeded whole, when the journal captures: its
    /// parameter rows (made only then), what it counted, and whether the server counted a
    /// write of it (`observed`, from [`GuestState::journal_after`]).
    fn capture_statement<T>(
        &self,
        call: &'static str,
        sql: &str,
        rows: impl FnOnce() -> Vec<Vec<Value>>,
        result: &wasmtime::Result<SqlResult<T>>,
        count: impl Fn(&T) -> u64,
        observed: Option<&Observed>,
    ) {
        if !self.captures() {
            return;
        }
        if let Ok(Ok(value)) = result {
            self.capture(journal::CapturedCall::Statement {
                call,
                sql: sql.to_owned(),
                rows: rows(),
                count: count(value),
                wrote: observed.map(|o| {
                    !o.tables.is_empty()
                        || o.rows_changed.is_some_and(|n| n > 0)
                        || o.locks.iter().any(|l| l.mode != "AccessShareLock")
                }),
            });
        }
    }

    /// After a journaled call: writes its entry, with what the server counted of it, and
    /// returns that count.
    async fn journal_after(
        &mut self,
        started: std::time::Instant,
        j: Journaled<'_>,
    ) -> Option<Observed> {
        let ms = journal::ms_since(started);
        let now = self.observe_now().await;
        let observed = match (&now, &self.journal_seen) {
            (Some(now), Some(before)) => Some(now.since(before)),
            _ => None,
        };
        self.journal_seen = now;
        let Some((journal, direction)) = &self.journal else {
            return observed;
        };
        journal.record(&Entry {
            revision: &self.revision,
            direction,
            call: j.call,
            sql: j.sql,
            params: j.params.iter().map(journal::param).collect(),
            statements: Vec::new(),
            param_rows: j.param_rows,
            rows: j.rows,
            ms,
            error: j.error,
            observed: observed.clone(),
        });
        observed
    }

    /// A progress report, in the journal (no SQL: `rows` is how much is done).
    fn journal_progress(&self, done: u64) {
        if let Some((journal, direction)) = &self.journal {
            journal.record(&Entry {
                revision: &self.revision,
                direction,
                call: "progress",
                sql: "",
                params: Vec::new(),
                statements: Vec::new(),
                param_rows: None,
                rows: Some(done),
                ms: 0.0,
                error: None,
                observed: None,
            });
        }
    }

    /// The server's counts of the transaction now, within the deadline (`None` when they
    /// cannot be read: an aborted transaction, a server that does not answer).
    async fn observe_now(&mut self) -> Option<Observed> {
        let deadline = self.deadline;
        let _under_way = DbCall::begin(&self.db_calls);
        journal::observe_by(self.session.as_deref_mut()?, deadline).await
    }
}

mod current;
mod legacy;

pub use self::legacy::NoSuchDialect;

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::{Engine, Instance, Module, ResourceLimiter as _, Store};

    use super::*;

    const PAGE: usize = 64 * 1024;

    #[test]
    fn memory_sizes_near_the_top_of_usize_cannot_wrap_past_the_cap() {
        let mut limiter = Limiter::new(16 * PAGE as u64);
        assert!(limiter.memory_growing(0, 16 * PAGE, None).unwrap());
        let err = limiter.memory_growing(0, usize::MAX, None).unwrap_err();
        assert!(matches!(
            err.downcast_ref::<LimitTrap>(),
            Some(LimitTrap::Memory(_))
        ));
        assert!(limiter.exceeded);
        // A shrinking "growth" counts as nothing rather than underflowing.
        assert!(limiter.memory_growing(usize::MAX, 0, None).unwrap());
        assert_eq!(limiter.reserved, 16 * PAGE as u64);
    }

    #[test]
    fn a_memory_growth_that_fails_after_being_allowed_is_not_counted() {
        let mut limiter = Limiter::new(4 * PAGE as u64);
        assert!(limiter.memory_growing(0, PAGE, None).unwrap());
        assert!(limiter.memory_growing(PAGE, 3 * PAGE, None).unwrap());
        // Such as the operating system refusing the mapping.
        limiter
            .memory_grow_failed(wasmtime::Error::msg("Cannot allocate memory"))
            .unwrap();
        assert_eq!(limiter.reserved, PAGE as u64);
        // Failing twice does not give back more than was reserved.
        limiter
            .memory_grow_failed(wasmtime::Error::msg("Cannot allocate memory"))
            .unwrap();
        assert_eq!(limiter.reserved, PAGE as u64);
        assert!(limiter.memory_growing(PAGE, 4 * PAGE, None).unwrap());
    }

    /// Runs `memory.grow` by each of `deltas` in a module whose memory is `memory`, under a
    /// limiter, and returns what each returned and what the limiter counted.
    fn grow_in_wasm(memory: &str, deltas: &[i32]) -> (Vec<i32>, u64) {
        let engine = Engine::default();
        let wat = format!(
            r#"(module (memory {memory})
                 (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))"#
        );
        let module = Module::new(&engine, wat::parse_str(wat).unwrap()).unwrap();
        let mut store = Store::new(&engine, Limiter::new(1 << 30));
        store.limiter(|l| l);
        let instance = Instance::new(&mut store, &module, &[]).unwrap();
        let grow = instance
            .get_typed_func::<i32, i32>(&mut store, "grow")
            .unwrap();
        let results = deltas
            .iter()
            .map(|d| grow.call(&mut store, *d).unwrap())
            .collect();
        (results, store.data().reserved)
    }

    #[test]
    fn growing_past_a_memorys_maximum_fails_without_being_counted() {
        let (results, reserved) = grow_in_wasm("1 3", &[5, 1, 5, 1]);
        assert_eq!(results, [-1, 1, -1, 2]);
        assert_eq!(reserved, 3 * PAGE as u64);
    }

    /// wasmtime reports a size the memory's type cannot hold (past 4 GiB for a 32-bit
    /// memory) as a failed growth it never asked about; the growth before it stays counted.
    /// Pins the wasmtime message `memory_grow_failed` relies on.
    #[test]
    fn a_growth_the_memory_type_cannot_hold_leaves_earlier_growth_counted() {
        let (results, reserved) = grow_in_wasm("1", &[1, 65536]);
        assert_eq!(results, [1, -1]);
        assert_eq!(reserved, 2 * PAGE as u64);
    }

    #[test]
    fn tables_together_are_capped() {
        let cap = usize::try_from(TABLE_ELEMENTS_CAP).unwrap();
        let mut limiter = Limiter::new(0);
        assert!(limiter.table_growing(0, cap / 2, None).unwrap());
        assert!(!limiter.table_growing(0, cap, Some(10)).unwrap());
        assert!(limiter.table_growing(0, cap / 2, None).unwrap());
        let err = limiter.table_growing(0, 1, None).unwrap_err();
        assert!(matches!(
            err.downcast_ref::<LimitTrap>(),
            Some(LimitTrap::Tables(_))
        ));
        assert!(limiter.tables_exceeded);
        assert!(limiter.table_growing(0, usize::MAX, None).is_err());
    }
}

//! The journal of a run (`up --journal FILE`): one JSON line per SQL call a step made, a
//! component's calls and an SQL revision's script alike, with its text, parameters, rows,
//! duration, error, and what the server counted of it (rows written per table and table
//! locks taken on PostgreSQL, rows changed on SQLite: [`Observed`]).
//!
//! Written as the calls happen (a line is flushed when written), so a run that fails or is
//! killed leaves the journal of what it did up to there.

use std::io::Write as _;
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;
use serde_json::{Value as Json, json};
use wasmig_contract::{ArrayValue, Value};
use wasmig_db::Observed;

/// The most a capturing journal keeps of a run's calls (`--sql`), as
/// [`wasmig_db::result_bytes`] counts their values: a component may make as many calls as
/// its time limit allows, each of up to the largest a call may carry, and every one is kept
/// until the script is written. Past it, nothing more is kept and the script is refused
/// ([`CaptureTooLarge`]).
pub const MAX_CAPTURE_BYTES: usize = 128 * 1024 * 1024;

/// Where a run's journal goes: a file of JSON lines (`--journal`), or kept in memory whole,
/// values and all, for `--sql` to write a component's calls out ([`Journal::capturing`]).
pub struct Journal {
    out: Option<Mutex<std::io::BufWriter<std::fs::File>>>,
    captured: Option<Mutex<Kept>>,
    /// The script will write each value where its placeholder is (SQLite's), so a value a
    /// statement names many times is written as many times.
    inlines: bool,
}

/// What a capturing journal holds: the calls, their size, and the revision whose call
/// would have passed [`MAX_CAPTURE_BYTES`], once one did.
#[derive(Default)]
struct Kept {
    calls: Vec<Captured>,
    bytes: usize,
    over: Option<String>,
}

/// A capturing journal stopped keeping calls: together they passed [`MAX_CAPTURE_BYTES`],
/// at a call of `revision`. The script would leave out what came after, so it is not
/// written.
#[derive(Debug, thiserror::Error)]
#[error(
    "revision {revision}: its SQL calls pass {} MiB, the most `--sql` keeps to write them as a script (it holds every value it writes); apply the revision with `wasmig up`, or see what it does with `wasmig up --dry-run` or `--journal FILE`",
    MAX_CAPTURE_BYTES >> 20
)]
pub struct CaptureTooLarge {
    /// The revision whose call passed the limit.
    pub revision: String,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("file", &self.out.is_some())
            .field("captures", &self.captured.is_some())
            .finish()
    }
}

/// One call of a component, kept whole by a capturing journal.
#[derive(Debug, Clone)]
pub struct Captured {
    /// The revision.
    pub revision: String,
    /// `upgrade` or `downgrade`.
    pub direction: &'static str,
    /// What it was.
    pub call: CapturedCall,
}

/// What a captured call did. Only calls that succeeded are kept (a failed one changed
/// nothing, and the component rolled back to a savepoint or failed the step).
#[derive(Debug, Clone)]
pub enum CapturedCall {
    /// `execute`, `query`, `open-cursor` (one parameter row), `execute-many` (each row).
    Statement {
        /// Which call.
        call: &'static str,
        /// Its SQL.
        sql: String,
        /// Its parameter rows.
        rows: Vec<Vec<Value>>,
        /// Rows affected or returned.
        count: u64,
        /// Whether the server counted a write of it: rows written, or a table lock stronger
        /// than a read's (`None`: not observed).
        wrote: Option<bool>,
    },
    /// A component's script (`batch`).
    Script(String),
    /// `copy-in`.
    Copy {
        /// The table, as the component named it.
        table: String,
        /// Its columns.
        columns: Vec<String>,
        /// The rows.
        rows: Vec<Vec<Value>>,
    },
    /// Rows fetched from a cursor.
    Fetch(u64),
    /// A savepoint begun, released (`false`) or rolled back (`true`), by its id.
    Savepoint {
        /// The savepoint's id within the step.
        id: u64,
        /// `None`: begun; `Some(true)`: rolled back to; `Some(false)`: released.
        ended: Option<bool>,
    },
}

/// One SQL call of a step.
#[derive(Debug, Serialize)]
pub struct Entry<'a> {
    /// The revision.
    pub revision: &'a str,
    /// `upgrade` or `downgrade`.
    pub direction: &'a str,
    /// `script` (an SQL revision's), `execute`, `query`, `batch`, `execute-many`,
    /// `copy-in`, `query-columns`, `execute-columns` (its parameters the arrays its columns
    /// bind as), `copy-in-columns`, `open-cursor` or `fetch` (a component's), or `progress`
    /// (a component's progress report, `rows` being how much is done).
    pub call: &'a str,
    /// The statement or script (for `copy-in` and `copy-in-columns`, the `COPY` it stands
    /// for).
    #[serde(skip_serializing_if = "str::is_empty")]
    pub sql: &'a str,
    /// The parameters, each `{"type", "value"}`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<Json>,
    /// A `script`: its statements with the rows each affected, when the server reported
    /// one result per statement.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub statements: Vec<Json>,
    /// `execute-many`, `copy-in` and `copy-in-columns`: how many parameter rows were sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param_rows: Option<usize>,
    /// Rows affected (`execute`, `execute-many`, `copy-in` and their column forms) or
    /// returned (`query`, `query-columns`, `fetch`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// Milliseconds the call took.
    pub ms: f64,
    /// The error it returned (SQLSTATE and message).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the server counted of the call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed: Option<Observed>,
}

impl Journal {
    /// Creates (or truncates) the journal file.
    ///
    /// # Errors
    /// The file cannot be created.
    pub fn create(path: &Path) -> std::io::Result<Journal> {
        Ok(Journal {
            out: Some(Mutex::new(std::io::BufWriter::new(std::fs::File::create(
                path,
            )?))),
            captured: None,
            inlines: false,
        })
    }

    /// A journal that writes no file and keeps every component call whole, values included,
    /// up to [`MAX_CAPTURE_BYTES`] (for `--sql`); `inlines`: the script will write values
    /// where their placeholders are (SQLite), not as parameters.
    pub fn capturing(inlines: bool) -> Journal {
        Journal {
            out: None,
            captured: Some(Mutex::new(Kept::default())),
            inlines,
        }
    }

    /// Whether it keeps calls whole ([`Journal::capturing`]), and has not stopped
    /// ([`MAX_CAPTURE_BYTES`]): callers build what they capture only then.
    pub fn captures(&self) -> bool {
        self.captured.as_ref().is_some_and(|c| {
            c.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .over
                .is_none()
        })
    }

    /// Keeps one call, when capturing, while the calls kept stay within
    /// [`MAX_CAPTURE_BYTES`]; the call that would pass it stops the capture.
    pub fn capture(&self, call: Captured) {
        let Some(captured) = &self.captured else {
            return;
        };
        let mut kept = captured
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if kept.over.is_some() {
            return;
        }
        let bytes = kept
            .bytes
            .saturating_add(captured_bytes(&call, self.inlines));
        if bytes > MAX_CAPTURE_BYTES {
            kept.over = Some(call.revision);
            kept.calls = Vec::new();
            return;
        }
        kept.bytes = bytes;
        kept.calls.push(call);
    }

    /// The calls kept, in order, taken out of the journal.
    ///
    /// # Errors
    /// [`CaptureTooLarge`] when the capture stopped.
    pub fn take_captured(&self) -> Result<Vec<Captured>, CaptureTooLarge> {
        let Some(captured) = &self.captured else {
            return Ok(Vec::new());
        };
        let mut kept = captured
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match kept.over.clone() {
            Some(revision) => Err(CaptureTooLarge { revision }),
            None => Ok(std::mem::take(&mut kept.calls)),
        }
    }

    /// Writes one entry as a line. A journal that cannot be written is warned about once
    /// per entry; the run goes on (the journal is a report, not part of the migration).
    pub fn record(&self, entry: &Entry<'_>) {
        let Some(out) = &self.out else {
            return;
        };
        let line = match serde_json::to_string(entry) {
            Ok(line) => line,
            Err(e) => {
                tracing::warn!("journal: cannot encode an entry: {e}");
                return;
            }
        };
        let mut out = out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
            tracing::warn!("journal: cannot write: {e}");
        }
    }
}

/// What a captured call costs the host, near enough, kept and then written out: each
/// value twice its bytes ([`wasmig_db::result_bytes`]; a literal's escapes and hex may
/// double it), an array four times (PostgreSQL's script escapes its elements once for the
/// array and again for the literal: `\` is written as four bytes, `true` in a `bool[]` as
/// seven where one byte is sent), and each row the statement's text again (SQLite inlines every row's values
/// into it, and PostgreSQL writes a statement without parameters, or one whose rows type a
/// parameter differently, once per row), each value again wherever SQLite may write it
/// more than once, plus [`CALL_BYTES`] for the call itself.
fn captured_bytes(call: &Captured, inlines: bool) -> usize {
    let rows = |text: usize, rows: &[Vec<Value>]| -> usize {
        rows.iter()
            .map(|r| {
                let arrays: usize = r
                    .iter()
                    .filter(|v| matches!(v, Value::Array(_)))
                    .map(|v| wasmig_db::result_bytes(std::slice::from_ref(v)))
                    .sum();
                2 * (wasmig_db::result_bytes(r) + arrays) + text + 8
            })
            .sum()
    };
    // SQLite's script writes a value's literal at every place its placeholder appears
    // (`?1` fifty thousand times, found by a review): each character that may begin one
    // counts the row's largest value again.
    let repeated = |sql: &str, rows: &[Vec<Value>]| -> usize {
        if !inlines {
            return 0;
        }
        let marks = sql
            .bytes()
            .filter(|b| matches!(b, b'?' | b':' | b'@' | b'$'))
            .count();
        if marks == 0 {
            return 0;
        }
        rows.iter()
            .map(|r| {
                let largest = r
                    .iter()
                    .map(|v| wasmig_db::result_bytes(std::slice::from_ref(v)))
                    .max()
                    .unwrap_or(0);
                marks.saturating_mul(2 * largest)
            })
            .fold(0usize, usize::saturating_add)
    };
    CALL_BYTES
        + call.revision.len()
        + match &call.call {
            CapturedCall::Statement { sql, rows: r, .. } => {
                sql.len() + rows(sql.len(), r) + repeated(sql, r)
            }
            CapturedCall::Script(script) => 2 * script.len(),
            CapturedCall::Copy {
                table,
                columns,
                rows: r,
            } => {
                // Written as an `INSERT` into the table's columns.
                let text = 32 + table.len() + columns.iter().map(|c| c.len() + 4).sum::<usize>();
                text + rows(text, r)
            }
            CapturedCall::Fetch(_) | CapturedCall::Savepoint { .. } => 0,
        }
}

/// What [`captured_bytes`] counts for a call whatever it holds: the kept call's own
/// structures (measured: 200,000 `execute("SELECT 1")` calls took the host about 57 MB).
const CALL_BYTES: usize = 256;

/// Milliseconds since `started`, to the microsecond.
pub fn ms_since(started: std::time::Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// What the server counts of `session`'s transaction now, if it answers by `deadline`
/// (`None` when the counts cannot be read: an aborted transaction, a server that does not
/// answer).
pub async fn observe_by(
    session: &mut dyn wasmig_db::Session,
    deadline: tokio::time::Instant,
) -> Option<Observed> {
    tokio::time::timeout_at(deadline, session.observe())
        .await
        .ok()?
        .ok()
}

/// The entry of an SQL revision's `script` (no parameters, no rows of its own).
pub fn script_entry<'a>(
    revision: &'a str,
    direction: &'a str,
    script: &'a str,
    ms: f64,
    error: Option<String>,
) -> Entry<'a> {
    Entry {
        revision,
        direction,
        call: "script",
        sql: script,
        params: Vec::new(),
        statements: Vec::new(),
        param_rows: None,
        rows: None,
        ms,
        error,
        observed: None,
    }
}

/// A parameter as the journal shows it: `{"type": "int64", "value": 42}`.
pub fn param(value: &Value) -> Json {
    let (kind, shown) = match value {
        Value::Null => ("null", Json::Null),
        Value::Bool(b) => ("bool", json!(b)),
        Value::Int16(i) => ("int16", json!(i)),
        Value::Int32(i) => ("int32", json!(i)),
        Value::Int64(i) => ("int64", json!(i)),
        Value::Float32(f) => ("float32", json!(f)),
        Value::Float64(f) => ("float64", json!(f)),
        Value::Numeric(s) => ("numeric", json!(s)),
        Value::Text(s) => ("text", json!(s)),
        Value::Bytes(b) => ("bytes", json!(format!("{} bytes", b.len()))),
        Value::Json(s) => ("json", json!(s)),
        Value::Jsonb(s) => ("jsonb", json!(s)),
        Value::Uuid(s) => ("uuid", json!(s)),
        Value::Date(s) => ("date", json!(s)),
        Value::Time(s) => ("time", json!(s)),
        Value::Timestamp(s) => ("timestamp", json!(s)),
        Value::Timestamptz(s) => ("timestamptz", json!(s)),
        Value::Array(a) => ("array", array(a)),
    };
    json!({ "type": kind, "value": shown })
}

/// An array parameter: its element type and length (its elements would make a line of a
/// 10,000-row batch megabytes long).
fn array(a: &ArrayValue) -> Json {
    let (kind, len) = match a {
        ArrayValue::Bool(v) => ("bool", v.len()),
        ArrayValue::Int16(v) => ("int16", v.len()),
        ArrayValue::Int32(v) => ("int32", v.len()),
        ArrayValue::Int64(v) => ("int64", v.len()),
        ArrayValue::Float32(v) => ("float32", v.len()),
        ArrayValue::Float64(v) => ("float64", v.len()),
        ArrayValue::Numeric(v) => ("numeric", v.len()),
        ArrayValue::Text(v) => ("text", v.len()),
        ArrayValue::Bytes(v) => ("bytes", v.len()),
        ArrayValue::Json(v) => ("json", v.len()),
        ArrayValue::Jsonb(v) => ("jsonb", v.len()),
        ArrayValue::Uuid(v) => ("uuid", v.len()),
        ArrayValue::Date(v) => ("date", v.len()),
        ArrayValue::Time(v) => ("time", v.len()),
        ArrayValue::Timestamp(v) => ("timestamp", v.len()),
        ArrayValue::Timestamptz(v) => ("timestamptz", v.len()),
    };
    json!(format!("{kind}[] of {len} element(s)"))
}

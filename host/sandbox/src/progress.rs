//! Progress reported by guests, as `tracing` events on [`TARGET`].
//!
//! The library draws nothing: each report is an `info` event with the fields `revision`,
//! `done` and (when the guest knows it) `total`, and the end of a step's progress is one
//! event with `finished = true`. The `wasmig` command renders them as a bar or as
//! throttled lines; an embedding application can subscribe to them or ignore them.

/// The `tracing` target of progress events.
pub const TARGET: &str = "wasmig::progress";

/// Progress of one migration step.
#[derive(Debug)]
pub struct Progress {
    revision: String,
    /// The figures of the last report, so a repeated one (a batch that found nothing
    /// left) is not sent again; `None` until the guest first reports.
    last: Option<(u64, Option<u64>)>,
}

impl Progress {
    /// Progress for the step of `revision`.
    pub fn new(revision: String) -> Self {
        Progress {
            revision,
            last: None,
        }
    }

    /// Records `done` of `total`.
    pub fn update(&mut self, done: u64, total: Option<u64>) {
        if self.last == Some((done, total)) {
            return;
        }
        self.last = Some((done, total));
        tracing::info!(target: TARGET, revision = %self.revision, done, total, "progress");
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.last.is_some() {
            tracing::info!(target: TARGET, revision = %self.revision, finished = true, "progress finished");
        }
    }
}

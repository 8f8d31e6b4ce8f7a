//! The host's rate limit on a guest's writes (`[throttle] max_rows_per_sec`): the rows a
//! step's `execute`, `execute-many` and `copy-in` calls report written are counted, and
//! before each SQL call the guest makes the host waits until the rows written so far fit
//! the rate, measured from the step's first call. The guest's code takes no part: it is
//! slowed between its calls, whatever language it is written in. One [`RowRate`] spans
//! every batch of a batched step.
//!
//! Not here: the limits between batches (batches per second, replication lag: the runner).

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A step's row rate: the limit, when its first call started, and the rows written since.
#[derive(Debug)]
pub struct RowRate {
    per_sec: f64,
    state: Mutex<Counted>,
}

#[derive(Debug, Default)]
struct Counted {
    started: Option<Instant>,
    rows: u64,
    waited: Duration,
}

impl RowRate {
    /// At most `per_sec` rows per second (above 0).
    pub fn new(per_sec: f64) -> Self {
        RowRate {
            per_sec,
            state: Mutex::new(Counted::default()),
        }
    }

    /// When the next call may start: the first call starts the clock, and a later one waits
    /// until the rows written so far are within the rate (`None`: now).
    pub(crate) fn next_call_at(&self) -> Option<Instant> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let started = *state.started.get_or_insert(now);
        let due = started + Duration::from_secs_f64(state.rows as f64 / self.per_sec);
        (due > now).then_some(due)
    }

    /// Counts rows a call wrote.
    pub(crate) fn wrote(&self, rows: u64) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.rows = state.rows.saturating_add(rows);
    }

    /// Adds time spent waiting, for the step's report.
    pub(crate) fn waited(&self, d: Duration) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.waited += d;
    }

    /// Logs what the throttle did in `revision`'s step, if it waited at all.
    pub fn report(&self, revision: &str) {
        let (rows, waited) = self.totals();
        if !waited.is_zero() {
            tracing::info!(
                "{revision}: throttled: waited {} ms in all to keep its {rows} row(s) written under {} per second ([throttle] max_rows_per_sec)",
                waited.as_millis(),
                self.per_sec
            );
        }
    }

    /// The rows counted and the time waited so far.
    pub fn totals(&self) -> (u64, Duration) {
        let state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (state.rows, state.waited)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_wait_until_the_rows_written_fit_the_rate() {
        let rate = RowRate::new(100.0);
        assert_eq!(rate.next_call_at(), None, "the first call starts the clock");
        rate.wrote(50);
        let due = rate
            .next_call_at()
            .expect("50 rows at 100/s: half a second");
        let wait = due - Instant::now();
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(500));
        rate.wrote(450);
        let due = rate.next_call_at().expect("500 rows at 100/s: 5 s");
        assert!(due - Instant::now() > Duration::from_millis(4900));
        assert_eq!(rate.totals().0, 500);
    }
}

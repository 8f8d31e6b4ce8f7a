//! The host's rate limit on a guest's writes (`[throttle] max_rows_per_sec`): the rows a
//! step's `execute`, `execute-many` and `copy-in` calls (and their column forms) report
//! written are counted, and
//! before each SQL call the guest makes (and before each batch of a batched step begins)
//! the host waits until they fit the rate. A token bucket: the allowance grows at the rate,
//! up to one second's worth, and each call's rows are taken from it; a call waits while it
//! is spent. So a pause (a wait for a standby, slow reads) never saves up more than a
//! second's burst. The guest's code takes no part: it is slowed between its calls,
//! whatever language it is written in. One [`RowRate`] spans every batch of a step.
//!
//! Not here: the limits between batches (batches per second, replication lag: the runner).

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A step's row rate: the limit, the allowance left, and what it did.
#[derive(Debug)]
pub struct RowRate {
    per_sec: f64,
    state: Mutex<Bucket>,
}

#[derive(Debug, Default)]
struct Bucket {
    /// Rows that may be written now (negative: owed, waited off at the rate).
    allowance: f64,
    /// When the allowance was last brought up to date (`None` before the first call).
    at: Option<Instant>,
    rows: u64,
    waited: Duration,
}

impl Bucket {
    /// Adds what the rate gave since it was last brought up to date, up to one second's
    /// worth.
    fn refill(&mut self, per_sec: f64, now: Instant) {
        if let Some(at) = self.at {
            let gained = now.saturating_duration_since(at).as_secs_f64() * per_sec;
            self.allowance = (self.allowance + gained).min(per_sec);
        }
        self.at = Some(now);
    }
}

impl RowRate {
    /// At most `per_sec` rows per second (above 0).
    pub fn new(per_sec: f64) -> Self {
        RowRate {
            per_sec,
            state: Mutex::new(Bucket::default()),
        }
    }

    fn bucket(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// When the next call may start (`None`: now): once the rows already written are paid
    /// off at the rate.
    pub fn next_call_at(&self) -> Option<Instant> {
        let mut bucket = self.bucket();
        let now = Instant::now();
        bucket.refill(self.per_sec, now);
        (bucket.allowance < 0.0)
            .then(|| now + Duration::from_secs_f64(-bucket.allowance / self.per_sec))
    }

    /// Counts rows a call wrote.
    pub(crate) fn wrote(&self, rows: u64) {
        let mut bucket = self.bucket();
        bucket.refill(self.per_sec, Instant::now());
        bucket.allowance -= rows as f64;
        bucket.rows = bucket.rows.saturating_add(rows);
    }

    /// Adds time spent waiting, for the step's report.
    pub fn waited(&self, d: Duration) {
        self.bucket().waited += d;
    }

    /// Waits until the next call may start, never past `deadline`.
    pub async fn wait(&self, deadline: Instant) {
        let Some(due) = self.next_call_at() else {
            return;
        };
        let started = Instant::now();
        tokio::time::sleep_until(due.min(deadline)).await;
        self.waited(started.elapsed());
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
        let bucket = self.bucket();
        (bucket.rows, bucket.waited)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_wait_until_the_rows_written_are_paid_off_at_the_rate() {
        let rate = RowRate::new(100.0);
        assert_eq!(rate.next_call_at(), None, "the first call starts at once");
        rate.wrote(50);
        let wait = rate
            .next_call_at()
            .expect("50 rows at 100/s: half a second")
            - Instant::now();
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(500));
        rate.wrote(450);
        let wait = rate.next_call_at().expect("500 rows at 100/s: 5 s") - Instant::now();
        assert!(wait > Duration::from_millis(4900));
        assert_eq!(rate.totals().0, 500);
    }

    #[test]
    fn a_pause_saves_up_at_most_one_seconds_worth() {
        let rate = RowRate::new(100.0);
        let mut bucket = rate.bucket();
        let start = Instant::now();
        bucket.refill(100.0, start);
        // An hour idle: the allowance is one second's, not an hour's.
        bucket.refill(100.0, start + Duration::from_secs(3600));
        assert!(
            (bucket.allowance - 100.0).abs() < 1e-6,
            "{}",
            bucket.allowance
        );
    }
}

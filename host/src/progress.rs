//! Progress reported by guests: a bar on a terminal, throttled log lines elsewhere.
//!
//! One bar at a time (migrations run one after another). Log lines printed while a bar is
//! shown go through [`suspend`] so they do not tear it.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Runs `f` with the current bar (if any) hidden.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    let bar = BAR.lock().ok().and_then(|b| b.clone());
    match bar {
        Some(bar) => bar.suspend(f),
        None => f(),
    }
}

/// Progress of one migration step.
#[derive(Debug)]
pub struct Progress {
    label: String,
    bar: Option<ProgressBar>,
    interactive: bool,
    last_line: Option<Instant>,
    /// The figures of the last line printed.
    last_shown: Option<(u64, Option<u64>)>,
}

impl Progress {
    /// Progress for the step `label`; a bar only when stderr is a terminal and `bars` is set.
    pub fn new(label: String, bars: bool) -> Self {
        Progress {
            label,
            bar: None,
            interactive: bars && std::io::stderr().is_terminal(),
            last_line: None,
            last_shown: None,
        }
    }

    /// Records `done` of `total`.
    pub fn update(&mut self, done: u64, total: Option<u64>) {
        if self.interactive {
            let bar = self.bar.get_or_insert_with(|| {
                let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
                let style = if total.is_some() {
                    "{prefix} [{bar:30}] {pos}/{len} ({per_sec}, eta {eta})"
                } else {
                    "{prefix} {spinner} {pos} ({per_sec})"
                };
                bar.set_style(
                    ProgressStyle::with_template(style)
                        .expect("valid template")
                        .progress_chars("=> "),
                );
                bar.set_prefix(self.label.clone());
                if let Ok(mut slot) = BAR.lock() {
                    *slot = Some(bar.clone());
                }
                bar
            });
            if let Some(total) = total {
                bar.set_length(total);
            }
            bar.set_position(done);
            return;
        }
        let due = self
            .last_line
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(2));
        let finished = total.is_some_and(|t| done >= t);
        // The same figures again (a batch that found nothing left) say nothing new.
        if self.last_shown == Some((done, total)) {
            return;
        }
        if due || finished {
            self.last_line = Some(Instant::now());
            self.last_shown = Some((done, total));
            match total {
                Some(total) if total > 0 => crate::info!(
                    "{}: {done}/{total} ({:.0}%)",
                    self.label,
                    done as f64 * 100.0 / total as f64
                ),
                _ => crate::info!("{}: {done}", self.label),
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            if let Ok(mut slot) = BAR.lock() {
                *slot = None;
            }
        }
    }
}

//! What the `wasmig` command prints on stderr: the `tracing` subscriber it installs.
//!
//! The library only emits `tracing` events (an embedding application captures or silences
//! them as it likes); this layer renders wasmig's own for a person: `info` lines as they are,
//! the other levels prefixed (`warn: …`), filtered by `-q` / `-v` / `LOG_LEVEL`. Progress
//! events (target [`wasmig::progress::TARGET`]) become a bar on a terminal, or throttled
//! lines elsewhere; other lines printed while a bar is shown suspend it so they do not tear
//! it. Events of other crates (sqlx, wasmtime) are not shown.
//!
//! Machine-readable output (`--json`) goes to stdout and never through here.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// Parses `trace|debug|info|warn|error|off` (case-insensitive), as `LOG_LEVEL` takes it.
pub(crate) fn parse_level(s: &str) -> Option<LevelFilter> {
    Some(match s.trim().to_ascii_lowercase().as_str() {
        "trace" => LevelFilter::TRACE,
        "debug" => LevelFilter::DEBUG,
        "info" => LevelFilter::INFO,
        "warn" | "warning" => LevelFilter::WARN,
        "error" => LevelFilter::ERROR,
        "off" | "none" => LevelFilter::OFF,
        _ => return None,
    })
}

/// The level in force; a project's `.env` can change it after the subscriber is installed.
static LEVEL: Mutex<LevelFilter> = Mutex::new(LevelFilter::INFO);

/// Sets the level of the lines printed.
pub(crate) fn set_level(level: LevelFilter) {
    if let Ok(mut slot) = LEVEL.lock() {
        *slot = level;
    }
}

fn level() -> LevelFilter {
    LEVEL.lock().map_or(LevelFilter::INFO, |l| *l)
}

/// Installs the terminal layer as the process's subscriber. `bars`: draw progress bars
/// when stderr is a terminal (off for `--json`). Installing twice keeps the first.
pub(crate) fn install(bars: bool) {
    let layer = Terminal {
        bars: bars && std::io::stderr().is_terminal(),
        progress: Mutex::new(None),
    };
    let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer));
}

/// The layer: whether to draw bars, and the progress of the step under way (one at a time:
/// migrations run one after another).
struct Terminal {
    bars: bool,
    progress: Mutex<Option<StepProgress>>,
}

/// The progress shown for one step.
struct StepProgress {
    revision: String,
    /// The bar, on a terminal.
    bar: Option<ProgressBar>,
    /// When the last plain line was printed.
    last_line: Option<Instant>,
}

/// A line as it may reach the terminal: control characters other than newlines and tabs
/// escaped (`\u{1b}`), whoever wrote them. Text wasmig did not write was already made one
/// line by `wasmig::bindings::text::shown`; this is the last defence for whatever reaches
/// stderr (wasmig's own multi-line messages keep their newlines).
pub(crate) fn visible(line: &str) -> String {
    line.chars()
        .flat_map(|c| {
            let escape = (c.is_control() && c != '\n' && c != '\t')
                || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
            let shown: Box<dyn Iterator<Item = char>> = if escape {
                Box::new(c.escape_default())
            } else {
                Box::new(std::iter::once(c))
            };
            shown
        })
        .collect()
}

impl Terminal {
    /// Prints a line, suspending the bar if one is drawn.
    fn print(&self, line: &str) {
        let line = &visible(line);
        let bar = self
            .progress
            .lock()
            .ok()
            .and_then(|p| p.as_ref().and_then(|p| p.bar.clone()));
        match bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    fn on_progress(&self, fields: &Fields) {
        let Some(revision) = fields.revision.clone() else {
            return;
        };
        let Ok(mut slot) = self.progress.lock() else {
            return;
        };
        if slot.as_ref().is_some_and(|p| p.revision != revision) {
            finish(slot.take());
        }
        if fields.finished {
            finish(slot.take());
            return;
        }
        let (done, total) = (fields.done.unwrap_or(0), fields.total);
        let step = slot.get_or_insert_with(|| StepProgress {
            revision: revision.clone(),
            bar: None,
            last_line: None,
        });
        if self.bars {
            let bar = step.bar.get_or_insert_with(|| new_bar(&revision, total));
            if let Some(total) = total {
                bar.set_length(total);
            }
            bar.set_position(done);
            return;
        }
        if level() < LevelFilter::INFO {
            return;
        }
        let due = step
            .last_line
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(2));
        let finished = total.is_some_and(|t| done >= t);
        if due || finished {
            step.last_line = Some(Instant::now());
            drop(slot);
            match total {
                Some(total) if total > 0 => self.print(&format!(
                    "{revision}: {done}/{total} ({:.0}%)",
                    done as f64 * 100.0 / total as f64
                )),
                _ => self.print(&format!("{revision}: {done}")),
            }
        }
    }
}

fn new_bar(revision: &str, total: Option<u64>) -> ProgressBar {
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
    bar.set_prefix(revision.to_owned());
    bar
}

fn finish(progress: Option<StepProgress>) {
    if let Some(bar) = progress.and_then(|p| p.bar) {
        bar.finish_and_clear();
    }
}

/// The fleet target a span runs (the library's `target` span, one per target of a fleet),
/// put before each line logged inside it: `[acme] applying …`.
struct FleetTarget(String);

impl<S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>> Layer<S> for Terminal {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        if attrs.metadata().name() != "target" {
            return;
        }
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let (Some(name), Some(span)) = (fields.target, ctx.span(id)) {
            span.extensions_mut().insert(FleetTarget(name));
        }
    }

    fn register_callsite(
        &self,
        metadata: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        // Asked again on every event, as the level can change.
        if metadata.target().starts_with("wasmig") {
            tracing::subscriber::Interest::sometimes()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn enabled(&self, metadata: &tracing::Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        metadata.target().starts_with("wasmig")
            && (metadata.target() == wasmig::progress::TARGET || *metadata.level() <= level())
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let metadata = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let fleet_target = ctx.event_scope(event).and_then(|scope| {
            scope
                .into_iter()
                .find_map(|span| span.extensions().get::<FleetTarget>().map(|t| t.0.clone()))
        });
        if metadata.target() == wasmig::progress::TARGET {
            if let (Some(name), Some(revision)) = (&fleet_target, &fields.revision) {
                fields.revision = Some(format!("[{name}] {revision}"));
            }
            self.on_progress(&fields);
            return;
        }
        let mut message = fields.message.unwrap_or_default();
        if let Some(name) = fleet_target {
            message = format!("[{name}] {message}");
        }
        match *metadata.level() {
            Level::INFO => self.print(&message),
            level => self.print(&format!("{}: {message}", level.as_str().to_lowercase())),
        }
    }
}

/// The fields wasmig's events carry.
#[derive(Default)]
struct Fields {
    message: Option<String>,
    /// A fleet's `target` span: the target's name.
    target: Option<String>,
    revision: Option<String>,
    done: Option<u64>,
    total: Option<u64>,
    finished: bool,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = Some(format!("{value:?}")),
            "revision" => self.revision = Some(format!("{value:?}")),
            "target" => self.target = Some(format!("{value:?}")),
            _ => {}
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = Some(value.to_owned()),
            "revision" => self.revision = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "done" => self.done = Some(value),
            "total" => self.total = Some(value),
            _ => {}
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == "finished" {
            self.finished = value;
        }
    }
}

//! A run's output as a snapshot shows it: the exit code and both streams, with what changes
//! between runs and machines redacted (the project's path, the database's URL and name, the
//! build directories, durations, timestamps, pids, checksums, and the lines of a nested
//! `cargo` build), and [`assert_run!`] to check it with `insta` under a readable name, per
//! backend when a test runs on both.
//!
//! Not here: what a test asserts beyond the text (exit codes through `Run::fails_with`,
//! JSON, the database's state), which stays with the test. Redaction is kept narrow on
//! purpose: a word a test is about (a revision, a setting, a limit it set, an error code)
//! is never replaced. A value that varies but is the point of a test (the pid of the
//! session holding the lock) is first named by the test with [`shown_with`], so the
//! snapshot shows which one was named.

use std::path::Path;

use crate::support::{Run, TestDb, TestProject, guests_target_dir, repo_root};

/// Both streams of a run, with its exit code, redacted for a snapshot.
pub(crate) fn shown(run: &Run, project: &TestProject, db: Option<&TestDb>) -> String {
    shown_with(run, project, db, &[])
}

/// [`shown`], after replacing each `(text, placeholder)` the test knows varies, e.g. the pid
/// of the connection it holds the lock with, as `[HOLDER_PID]`.
pub(crate) fn shown_with(
    run: &Run,
    project: &TestProject,
    db: Option<&TestDb>,
    known: &[(&str, &str)],
) -> String {
    let text = format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        run.code, run.stdout, run.stderr
    );
    redact(&text, &project.dir, db, known)
}

/// [`shown`] for a run in a directory that is not the test's project (a clone of it, or no
/// project at all): `[DIR]` in the snapshot.
pub(crate) fn shown_in(run: &Run, dir: &Path, db: Option<&TestDb>) -> String {
    let text = format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        run.code, run.stdout, run.stderr
    );
    let text = text.replace(&dir.display().to_string(), "[DIR]");
    redact(&text, dir, db, &[])
}

/// The exit code and stderr of a run whose stdout is JSON, which the test checks field by
/// field (it holds durations and counts a snapshot would have to redact).
pub(crate) fn shown_log(run: &Run, project: &TestProject, db: Option<&TestDb>) -> String {
    let text = format!(
        "exit: {}\n--- stdout: JSON, checked by the test\n--- stderr\n{}",
        run.code, run.stderr
    );
    redact(&text, &project.dir, db, &[])
}

/// Only the exit code and what stderr says from its first `error:` line on (the error, its
/// `Caused by:` chain and its `hint:`), for a run whose progress lines depend on timing.
pub(crate) fn shown_error(run: &Run, project: &TestProject, db: Option<&TestDb>) -> String {
    let from = run
        .stderr
        .lines()
        .position(|line| line.starts_with("error:"))
        .unwrap_or(run.stderr.lines().count());
    let error: String = run
        .stderr
        .lines()
        .skip(from)
        .map(|line| format!("{line}\n"))
        .collect();
    redact(
        &format!("exit: {}\n--- stderr from `error:`\n{error}", run.code),
        &project.dir,
        db,
        &[],
    )
}

/// Asserts an `insta` snapshot of a text made by [`shown`] (or another `shown_*` function
/// of this module), named `$name`, with the backend as the snapshot's suffix when given
/// (`e2e__graph__two_heads_refused@postgres.snap`). A macro rather than a function because
/// `insta` names the snapshot file after the module the assertion is written in.
macro_rules! assert_run {
    ($name:expr, $backend:expr, $text:expr $(,)?) => {
        insta::with_settings!(
            { snapshot_suffix => format!("{:?}", $backend).to_lowercase() },
            { insta::assert_snapshot!($name, $text) }
        )
    };
    ($name:expr, $text:expr $(,)?) => {
        insta::assert_snapshot!($name, $text)
    };
}
pub(crate) use assert_run;

/// The lines a nested `cargo` prints while building a Rust guest, which differ between a
/// cold and a warm build (and with what else is building): dropped.
const CARGO_LINES: [&str; 9] = [
    "Compiling ",
    "Finished ",
    "Blocking ",
    "Locking ",
    "Downloaded ",
    "Downloading ",
    "Updating ",
    "Adding ",
    "Checking ",
];

fn redact(text: &str, project: &Path, db: Option<&TestDb>, known: &[(&str, &str)]) -> String {
    let mut text = text.to_owned();
    for (from, to) in known {
        text = text.replace(from, to);
    }
    if let Some(db) = db {
        text = text.replace(&db.url, "[DATABASE_URL]");
        let name = db.url.rsplit('/').next().unwrap_or_default();
        if name.starts_with("wasmig_e2e_") {
            text = text.replace(name, "[DATABASE]");
        }
    }
    // The most specific path first: a project may live under the repository's root.
    text = text.replace(&project.display().to_string(), "[PROJECT]");
    text = text.replace(&guests_target_dir().display().to_string(), "[TARGET]");
    text = text.replace(&repo_root().display().to_string(), "[REPO]");
    redact_numbers(&without_backtraces(&without_progress(&without_cargo(
        &text,
    ))))
}

/// `text` with the frames of a trap's wasm backtrace (offsets and mangled names that change
/// with the toolchain that built the guest) replaced by `[BACKTRACE]`. wasmig shows a
/// trap's text on one line, its newlines escaped (`\n`).
fn without_backtraces(text: &str) -> String {
    const START: &str = "wasm backtrace:\\n";
    const END: &str = "\\n\\nCaused by:";
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(START) {
        let frames = at + START.len();
        let Some(len) = rest[frames..].find(END) else {
            break;
        };
        out.push_str(&rest[..frames]);
        out.push_str("[BACKTRACE]");
        rest = &rest[frames + len..];
    }
    out.push_str(rest);
    out
}

/// `text` without the progress lines of a long step (`b1: 100/250 (40%)`) but the last
/// (`b1: 250/250 (100%)`): one is printed at the start and then one every 2 s, so how many
/// show depends on how fast the machine is.
fn without_progress(text: &str) -> String {
    let mut kept = String::new();
    for line in text.lines() {
        let progress = line.split_once(": ").is_some_and(|(revision, rest)| {
            !revision.contains(' ')
                && rest.ends_with("%)")
                && rest.split_once(' ').is_some_and(|(count, percent)| {
                    count.contains('/')
                        && count.bytes().all(|b| b.is_ascii_digit() || b == b'/')
                        && percent.starts_with('(')
                })
        });
        if progress && !line.ends_with("(100%)") {
            continue;
        }
        kept.push_str(line);
        kept.push('\n');
    }
    kept
}

/// `text` without a nested cargo's status lines (`   Compiling …`, indented to the right;
/// wasmig's own lines start at the margin) and its warnings (a `warning:` line and the
/// indented or numbered lines of its snippet; wasmig's own warnings read `warn: …`).
fn without_cargo(text: &str) -> String {
    let mut kept = String::new();
    let mut in_warning = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indented = line.len() > trimmed.len();
        if trimmed.starts_with("warning: ") {
            in_warning = true;
            continue;
        }
        let snippet = trimmed.is_empty()
            || indented
            || trimmed
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .starts_with(" |");
        if in_warning && snippet {
            continue;
        }
        in_warning = false;
        if indented && CARGO_LINES.iter().any(|word| trimmed.starts_with(word)) {
            continue;
        }
        kept.push_str(line);
        kept.push('\n');
    }
    kept
}

/// Replaces what changes from run to run word by word: durations (`12 ms`, `after 2 s`,
/// `in 1.204 s`; not a limit such as `of 1.5 s`), timestamps (RFC 3339, and PostgreSQL's
/// `2026-01-02 03:04:05 UTC`), pids (`pid 1234`), 12-digit checksum prefixes, the creation
/// time a revision directory starts with, and a compile-cache entry's engine fingerprint.
fn redact_numbers(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let all: Vec<&str> = line.split(' ').collect();
        let mut redacted = Vec::with_capacity(all.len());
        let mut skip_next = false;
        for (i, word) in all.iter().enumerate() {
            if skip_next {
                skip_next = false;
                continue;
            }
            let prev = if i > 0 { all[i - 1] } else { "" };
            let next = all.get(i + 1).copied().unwrap_or("");
            let is_number = !word.is_empty() && word.bytes().all(|b| b.is_ascii_digit());
            let is_decimal = word.contains('.')
                && word.bytes().all(|b| b.is_ascii_digit() || b == b'.')
                && word.bytes().next().is_some_and(|b| b.is_ascii_digit());
            // Punctuation after a word (`…Z:`, `…d05)`) is kept, not part of what it is.
            let core = word.trim_end_matches([',', ')', ':', ';']);
            let tail = &word[core.len()..];
            let is_time = core.len() >= 20
                && core.as_bytes()[4] == b'-'
                && core.contains('T')
                && core.ends_with('Z');
            let is_date = core.len() == 10
                && core.as_bytes()[4] == b'-'
                && core.as_bytes()[7] == b'-'
                && core.bytes().filter(u8::is_ascii_digit).count() == 8;
            let next_is_clock = next.len() >= 8
                && next.as_bytes()[2] == b':'
                && next.as_bytes()[5] == b':'
                && next.as_bytes()[..8]
                    .iter()
                    .filter(|b| b.is_ascii_digit())
                    .count()
                    == 6;
            let core_number = !core.is_empty() && core.bytes().all(|b| b.is_ascii_digit());
            let dated = created_at(word);
            let is_checksum =
                core.len() == 12 && core.bytes().all(|b| b.is_ascii_hexdigit()) && i > 2;
            let unit = next.trim_end_matches([',', ')', ':', ';', '.']);
            let duration =
                (is_number || is_decimal) && (unit == "ms" || (unit == "s" && measured(prev)));
            redacted.push(if duration {
                "[N]".to_owned()
            } else if core_number && prev == "pid" {
                format!("[PID]{tail}")
            } else if is_time {
                format!("[TIME]{tail}")
            } else if is_date && next_is_clock {
                skip_next = true;
                format!("[TIME]{}", &next[8..])
            } else if let Some(at) = dated {
                format!("{}[CREATED]{}", &word[..at], &word[at + 15..])
            } else if let Some(entry) = cache_entry(word) {
                entry
            } else if is_checksum {
                format!("[CHECKSUM]{tail}")
            } else {
                (*word).to_owned()
            });
        }
        out.push_str(&redacted.join(" "));
        out.push('\n');
    }
    out
}

/// Where in `word` a revision directory's name starts with its creation time
/// (`YYYY_MM_DD_HHMM-`), if it does.
fn created_at(word: &str) -> Option<usize> {
    let bytes = word.as_bytes();
    (0..bytes.len().saturating_sub(15)).find(|&at| {
        let part = &bytes[at..at + 16];
        (at == 0 || matches!(bytes[at - 1], b'/' | b'`' | b'\'' | b'"' | b'('))
            && part.iter().enumerate().all(|(i, &b)| match i {
                4 | 7 | 10 => b == b'_',
                15 => b == b'-',
                _ => b.is_ascii_digit(),
            })
    })
}

/// Whether a number of seconds after `word` is one a run measured (`gave up after 2 s`,
/// `in 1.2 s`, `took 3 s`) rather than a limit the test set.
fn measured(word: &str) -> bool {
    matches!(word, "after" | "in" | "took")
}

/// A compile-cache entry's path with the fingerprint of the engine that compiled it
/// (`…/<component hash>-<engine>.cwasm`: wasmtime's version, settings and the CPU's
/// features) replaced, as it differs between machines and builds.
fn cache_entry(word: &str) -> Option<String> {
    let end = word.find(".cwasm")?;
    let dash = word[..end].rfind('-')?;
    Some(format!("{}-[ENGINE]{}", &word[..dash], &word[end..]))
}

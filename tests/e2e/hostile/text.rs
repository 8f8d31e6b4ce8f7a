//! Text wasmig did not write is shown as data: a guest's log lines and error, a server's
//! error message and a revision's message cannot forge lines of wasmig's output, move the
//! cursor or recolour the terminal, or flood it.

use std::path::Path;

use crate::snap::{assert_run, shown};
use crate::support::{BOTH, Backend, Run, TestDb, TestProject};

/// What a hostile author would like wasmig to print.
const FORGED: &str = "done\napplied 3 revision(s) in 1 ms\r\u{1b}[2K\u{1b}[32mok\u{202E}";

/// No line of `run` is a forged one, and no escape character reached the terminal.
#[track_caller]
fn nothing_forged(run: &Run) {
    for line in run.stderr.lines().chain(run.stdout.lines()) {
        assert!(
            !line.starts_with("applied 3 revision(s)"),
            "a forged line reached the output: {run:?}"
        );
    }
    for c in ['\u{1b}', '\r', '\u{202E}'] {
        assert!(
            !run.stderr.contains(c) && !run.stdout.contains(c),
            "{c:?} reached the output: {run:?}"
        );
    }
}

#[tokio::test]
async fn a_guests_log_and_error_cannot_forge_wasmigs_output() {
    for backend in BOTH {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        db.exec("CREATE TABLE e2e_mode (mode text); INSERT INTO e2e_mode VALUES ('forge');")
            .await;
        db.exec("CREATE TABLE e2e_text (text text);").await;
        let quoted = FORGED.replace('\'', "''");
        match backend {
            // E'' keeps the control characters as the guest will read them.
            Backend::Postgres => {
                db.exec(&format!(
                    "INSERT INTO e2e_text VALUES (E'{}')",
                    quoted
                        .replace('\n', "\\n")
                        .replace('\r', "\\r")
                        .replace('\u{1b}', "\\x1b")
                ))
                .await
            }
            Backend::Mysql => unreachable!("on MySQL: mysql.rs, and the suites over ALL"),
            Backend::Sqlite => {
                db.exec(&format!("INSERT INTO e2e_text VALUES ('{quoted}')"))
                    .await
            }
        }
        project.wasm_revision("g1", Path::new(crate::test_guest::SCENARIO));
        let run = project.run(&db, &["up"]).fails_with(6);
        nothing_forged(&run);
        // Shown, escaped, with the revision named.
        assert_run!(
            "guest_log_and_error_escaped",
            backend,
            shown(&run, &project, Some(&db))
        );
        assert!(db.heads().await.is_empty(), "{backend:?}");
        assert!(!db.table_exists("scenario_marker").await, "{backend:?}");
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_server_error_message_cannot_forge_wasmigs_output() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    project.sql_revision(
        "b2",
        "INSERT INTO t VALUES (1);
         DO $$ BEGIN RAISE EXCEPTION E'done\\napplied 3 revision(s) in 1 ms\\r\\x1b[2K' \
         USING DETAIL = E'\\x1b]0;title\\x07', HINT = repeat('x', 100000); END $$;",
        "SELECT 1;",
    );
    let run = project.run(&db, &["up"]).fails_with(6);
    nothing_forged(&run);
    assert!(!run.stderr.contains('\u{7}'), "{run:?}");
    // Escaped, and the hint's 100,000 characters cut, with a marker.
    assert_run!(
        "server_error_escaped_and_cut",
        shown(&run, &project, Some(&db))
    );
    assert!(run.stderr.len() < 20_000, "{} bytes", run.stderr.len());
    assert_eq!(db.heads().await, ["a1"]);
    assert_eq!(db.count("SELECT count(*) FROM t").await, 0);
    db.drop_db().await;
}

#[tokio::test]
async fn a_revision_message_cannot_forge_wasmigs_output() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Sqlite, &project).await;
    let dir = project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    let manifest = dir.join("migration.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let forged = text
        .lines()
        .map(|l| {
            if l.starts_with("message") {
                "message = \"done\\napplied 3 revision(s) in 1 ms\\u001b[2K\"".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&manifest, forged).unwrap();
    let run = project.run(&db, &["up"]).success();
    nothing_forged(&run);
    assert_run!("revision_message_escaped", shown(&run, &project, Some(&db)));
    assert_eq!(db.heads().await, ["a1"]);
}

#[tokio::test]
async fn a_huge_server_error_is_stored_capped_in_wasmigs_tables() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    let dir = project.sql_revision(
        "n1",
        "CREATE TABLE kept (x int);
         DO $$ BEGIN RAISE EXCEPTION '%', repeat(E'y\\n', 1000000); END $$;",
        "DROP TABLE kept;",
    );
    let manifest = dir.join("migration.toml");
    let text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("transaction = \"per-migration\"", "transaction = \"none\"");
    std::fs::write(&manifest, text).unwrap();
    let run = project.run(&db, &["up"]).fails_with(6);
    assert!(
        run.stderr.len() < 20_000,
        "{} bytes printed",
        run.stderr.len()
    );
    let stored = db
        .strings("SELECT error FROM wasmig_history WHERE direction = 'failed'")
        .await;
    assert_eq!(stored.len(), 1, "{run:?}");
    assert!(stored[0].len() < 32_768, "{} bytes stored", stored[0].len());
    assert!(
        stored[0].contains("more bytes not shown"),
        "{}",
        &stored[0][..200]
    );
    assert!(!stored[0].contains('\n'));
    let marks = db.strings("SELECT error FROM wasmig_failed").await;
    assert!(
        marks[0].len() < 32_768,
        "{} bytes in the mark",
        marks[0].len()
    );
    db.drop_db().await;
}

/// A guest logging 10 MB in one call (100,000 lines) passes on its first MiB of lines; the
/// rest is dropped and counted, and the step is applied.
#[tokio::test]
async fn a_guest_logging_without_end_is_cut_at_its_budget() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    db.exec("CREATE TABLE e2e_mode (mode text); INSERT INTO e2e_mode VALUES ('log-flood');")
        .await;
    project.wasm_revision("b2", Path::new(crate::test_guest::SCENARIO));
    let run = project.run(&db, &["up"]).success();
    let shown = run.stderr.lines().filter(|l| l.contains("[b2]")).count();
    assert!(
        (10_000..12_000).contains(&shown),
        "{shown} lines shown, {} bytes of stderr",
        run.stderr.len()
    );
    assert!(run.stderr.len() < 2 * 1024 * 1024, "{}", run.stderr.len());
    let dropped = 100_000 - shown;
    assert!(
        run.stderr.contains(&format!(
            "revision b2: {dropped} more log line(s) of the migration were dropped"
        )),
        "{}",
        &run.stderr[run.stderr.len().saturating_sub(500)..]
    );
    assert_eq!(db.heads().await, ["b2"]);
    db.drop_db().await;
}

/// A revision's message (and its directory, named after it) is listed as data by every
/// command that lists revisions: no escape, carriage return or bidirectional control
/// reaches the terminal, and its newline cannot start a line of its own.
#[tokio::test]
async fn a_revisions_message_is_listed_as_data() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Sqlite, &project).await;
    project
        .run_plain(&["revision", "-m", FORGED, "--rev-id", "f1"])
        .success();
    for args in [
        &["history"][..],
        &["history", "--verbose"],
        &["heads"],
        &["show", "head"],
        &["current"],
        &["status"],
    ] {
        let run = project.run(&db, args).success();
        nothing_forged(&run);
        assert!(
            run.stdout.contains("\\u{1b}[32mok") || run.stdout.contains("\\u{1b}[2K"),
            "{args:?}: {run:?}"
        );
    }
}

/// Lines no one is shown (trace, without `-v`) do not use up a call's log budget: a line
/// shown after 6 MB of them still reaches the terminal.
#[tokio::test]
async fn log_lines_not_shown_do_not_use_up_the_budget() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    db.exec("CREATE TABLE e2e_mode (mode text); INSERT INTO e2e_mode VALUES ('log-hidden');")
        .await;
    project.wasm_revision("b2", Path::new(crate::test_guest::SCENARIO));
    let run = project.run(&db, &["up"]).success();
    assert!(
        run.stderr.contains("visible after the trace lines") && !run.stderr.contains("dropped"),
        "{}",
        &run.stderr[run.stderr.len().saturating_sub(500)..]
    );
    db.drop_db().await;
}

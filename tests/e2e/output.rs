//! The text a person reads, checked as text: `insta` snapshots of the CLI's human output
//! (listings, status, plans, a run's log, errors and `--help`), with what changes from run
//! to run (the project's path, the database URL, durations, timestamps, checksums) redacted.
//! Review a change with `cargo insta review`, or `INSTA_UPDATE=always cargo test` then
//! `git diff`.

use crate::support::{Backend, Run, TestDb, TestProject};

/// Both streams of a run, with its exit code, redacted for a snapshot.
fn shown(run: &Run, project: &TestProject, db: Option<&TestDb>) -> String {
    let mut text = format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        run.code, run.stdout, run.stderr
    );
    if let Some(db) = db {
        text = text.replace(&db.url, "[DATABASE_URL]");
    }
    text = text.replace(&project.dir.display().to_string(), "[PROJECT]");
    redact_numbers(&text)
}

/// Replaces durations (`12 ms`), RFC 3339 timestamps and 12-digit checksum prefixes, which
/// change from run to run.
fn redact_numbers(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let all: Vec<&str> = line.split(' ').collect();
        let mut redacted = Vec::with_capacity(all.len());
        for (i, word) in all.iter().enumerate() {
            let next = all.get(i + 1).copied().unwrap_or("");
            let is_number = !word.is_empty() && word.bytes().all(|b| b.is_ascii_digit());
            // Punctuation after a word (`…Z:`, `…d05)`) is kept, not part of what it is.
            let core = word.trim_end_matches([',', ')', ':', ';']);
            let tail = &word[core.len()..];
            let is_time = core.len() >= 20
                && core.as_bytes()[4] == b'-'
                && core.contains('T')
                && core.ends_with('Z');
            // A revision directory starts with its creation time: YYYY_MM_DD_HHMM-.
            let dated = word.find("versions/").map(|at| &word[at + 9..]);
            let is_dated = dated.is_some_and(|d| d.len() > 16 && d.as_bytes()[15] == b'-');
            let is_checksum =
                core.len() == 12 && core.bytes().all(|b| b.is_ascii_hexdigit()) && i > 2;
            redacted.push(if is_number && next.starts_with("ms") {
                "[N]".to_owned()
            } else if is_time {
                format!("[TIME]{tail}")
            } else if is_dated {
                let at = word.find("versions/").expect("dated") + 9;
                format!("{}[CREATED]{}", &word[..at], &word[at + 15..])
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

/// Two heads: a1 -> b2 and a1 -> c3.
fn project_with_two_heads() -> TestProject {
    let project = TestProject::new();
    project.sql_revision("a1", "CREATE TABLE t (x integer);", "DROP TABLE t;");
    project.sql_revision("b2", "INSERT INTO t VALUES (1);", "DELETE FROM t;");
    let c3 = project
        .run_plain(&[
            "revision", "-m", "side", "--rev-id", "c3", "--head", "a1", "--splice",
        ])
        .success();
    assert_eq!(c3.code, 0);
    project
}

/// The two heads merged by d4.
fn project_with_a_graph() -> TestProject {
    let project = project_with_two_heads();
    project
        .run_plain(&["merge", "heads", "-m", "merge", "--rev-id", "d4"])
        .success();
    project
}

#[tokio::test]
async fn listings_read_as_documented() {
    let project = project_with_a_graph();
    insta::assert_snapshot!(
        "history",
        shown(&project.run_plain(&["history"]), &project, None)
    );
    insta::assert_snapshot!(
        "heads",
        shown(&project.run_plain(&["heads"]), &project, None)
    );
    insta::assert_snapshot!(
        "branches",
        shown(&project.run_plain(&["branches"]), &project, None)
    );
    insta::assert_snapshot!(
        "show_b2",
        shown(&project.run_plain(&["show", "b2"]), &project, None)
    );
}

#[tokio::test]
async fn a_run_reads_as_documented() {
    let project = project_with_a_graph();
    let db = TestDb::new(Backend::Postgres, &project).await;
    let show = |args: &[&str]| shown(&project.run(&db, args), &project, Some(&db));
    insta::assert_snapshot!("current_at_base", show(&["current"]));
    insta::assert_snapshot!("plan", show(&["up", "--plan"]));
    insta::assert_snapshot!("up", show(&["up", "b2"]));
    insta::assert_snapshot!("current_part_way", show(&["current"]));
    insta::assert_snapshot!("up_nothing_to_do", show(&["up", "b2"]));
    insta::assert_snapshot!("check", show(&["check"]));
    insta::assert_snapshot!("history_log", show(&["history", "--log"]));
    insta::assert_snapshot!("down_to_base", show(&["down", "base"]));
    db.drop_db().await;
}

#[tokio::test]
async fn errors_read_as_documented() {
    let project = project_with_two_heads();
    let db = TestDb::new(Backend::Sqlite, &project).await;
    let show = |args: &[&str]| shown(&project.run(&db, args), &project, Some(&db));
    insta::assert_snapshot!("unknown_target", show(&["up", "nope"]));
    insta::assert_snapshot!("several_heads", show(&["up", "head"]));
    insta::assert_snapshot!("check_single_head", show(&["check", "--single-head"]));
    project
        .run_plain(&["merge", "heads", "-m", "merge", "--rev-id", "d4"])
        .success();
    project.sql_revision("e5", "INSERT INTO missing VALUES (1);", "SELECT 1;");
    insta::assert_snapshot!("failing_step", show(&["up"]));
}

/// The failures a person has to act on, each with its `hint:` (the next command to run),
/// on SQLite so that the database's own wording is stable.
#[tokio::test]
async fn failure_states_read_as_documented() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Sqlite, &project).await;
    let show = |args: &[&str]| shown(&project.run(&db, args), &project, Some(&db));
    let a1 = project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    project.run(&db, &["up"]).success();
    // An applied revision edited afterwards (exit 12).
    std::fs::write(a1.join("up.sql"), "CREATE TABLE t (x int, y int);").unwrap();
    insta::assert_snapshot!("modified", show(&["up"]));
    project.run(&db, &["rehash", "a1"]).success();
    // Nothing to resolve (exit 4).
    insta::assert_snapshot!("not_failed", show(&["resolve", "a1", "--as", "applied"]));
    // A revision without a transaction failing part-way (exit 6), then the mark it leaves
    // (exit 13).
    let b2 = project.sql_revision(
        "b2",
        "CREATE TABLE kept (x int);\nINSERT INTO missing VALUES (1);\n",
        "DROP TABLE kept;",
    );
    let manifest = std::fs::read_to_string(b2.join("migration.toml")).unwrap();
    std::fs::write(
        b2.join("migration.toml"),
        manifest.replace("transaction = \"per-migration\"", "transaction = \"none\""),
    )
    .unwrap();
    insta::assert_snapshot!("failed_part_way", show(&["up"]));
    insta::assert_snapshot!("marked_failed", show(&["up"]));
    project
        .run(&db, &["resolve", "b2", "--as", "applied"])
        .success();
    // A step over its time limit (exit 7).
    let c3 = project.sql_revision(
        "c3",
        "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c) SELECT count(*) FROM c;",
        "SELECT 1;",
    );
    project.set_manifest(&c3, "timeout_secs = 1");
    insta::assert_snapshot!("deadline", show(&["up"]));
    // A manifest wasmig cannot read (exit 3).
    project.set_manifest(&c3, "timeout_secs = 2");
    insta::assert_snapshot!("bad_manifest", show(&["up"]));
}

/// The failures of what a run is given rather than of a step: a component that is not one
/// (exit 8), a database that cannot be reached (exit 5).
#[tokio::test]
async fn refusals_before_a_step_read_as_documented() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Sqlite, &project).await;
    let show = |args: &[&str]| shown(&project.run(&db, args), &project, Some(&db));
    let core = wat::parse_str("(module (func (export \"upgrade\")))").unwrap();
    project.wasm_revision_bytes("a1", &core);
    insta::assert_snapshot!("core_module", show(&["up"]));
    let unreachable =
        project.run_plain(&["up", "--database-url", "postgres://wasmig@127.0.0.1:1/none"]);
    insta::assert_snapshot!("unreachable_database", shown(&unreachable, &project, None));
}

#[test]
fn help_reads_as_documented() {
    let project = TestProject::new();
    insta::assert_snapshot!(
        "help",
        shown(&project.run_plain(&["--help"]), &project, None)
    );
    insta::assert_snapshot!(
        "up_help",
        shown(&project.run_plain(&["up", "--help"]), &project, None)
    );
}

//! The revision graph end to end: branches, merges, labels, dependencies, stamp, plans and
//! graph errors, driven through the commands on SQL revisions against both backends.

use std::path::PathBuf;

use serde_json::json;

use crate::snap::{assert_run, shown};
use crate::support::{ALL, BOTH, Run, TestDb, TestProject};

const GRAPH: i32 = 4;

/// Creates a SQL revision `id` (with `wasmig revision` and `extra` flags) whose upgrade
/// creates table `t_<id>` and whose downgrade drops it.
fn rev(project: &TestProject, id: &str, extra: &[&str]) -> PathBuf {
    let mut args = vec!["revision", "-m", id, "--rev-id", id, "--json"];
    args.extend_from_slice(extra);
    let run = project.run_plain(&args).success();
    let dir = PathBuf::from(run.json()["directory"].as_str().unwrap());
    std::fs::write(dir.join("up.sql"), format!("CREATE TABLE t_{id} (n int);")).unwrap();
    std::fs::write(dir.join("down.sql"), format!("DROP TABLE t_{id};")).unwrap();
    dir
}

fn plan(project: &TestProject, db: &TestDb, args: &[&str]) -> Vec<String> {
    let mut all = args.to_vec();
    all.extend(["--plan", "--json"]);
    let out = project.run(db, &all).success().json();
    let keys: Vec<&str> = out
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["steps"],
        "the plan is exactly one document with steps"
    );
    out["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let sign = if s["action"] == "upgrade" { "+" } else { "-" };
            format!("{sign}{}", s["revision"].as_str().unwrap())
        })
        .collect()
}

/// The tables the revisions created, sorted: the schema as the version table should see it.
async fn tables(db: &TestDb, ids: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for id in ids {
        if db.table_exists(&format!("t_{id}")).await {
            found.push((*id).to_owned());
        }
    }
    found
}

fn heads_json(run: Run) -> serde_json::Value {
    run.success().json()["heads"].clone()
}

#[tokio::test]
async fn branches_merges_labels_and_stamp_work_on_both_backends() {
    let all = ["a1", "b2", "c3", "d4", "e5", "f6", "g7"];
    for backend in ALL {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        rev(&project, "a1", &[]);
        rev(&project, "b2", &[]);
        // Branching from a non-head needs --splice, as in Alembic.
        let refused = project
            .run_plain(&["revision", "-m", "c3", "--rev-id", "c3", "--head", "a1"])
            .fails_with(GRAPH);
        assert_run!(
            "branch_from_non_head_refused",
            shown(&refused, &project, None)
        );
        rev(&project, "c3", &["--head", "a1", "--splice"]);

        // Two heads: CI's check catches it, `head` is ambiguous, `heads` is not.
        project.run_plain(&["check"]).success();
        let two = project
            .run_plain(&["check", "--single-head"])
            .fails_with(GRAPH);
        assert_run!("two_heads_refused", shown(&two, &project, None));
        assert_eq!(
            heads_json(project.run_plain(&["heads", "--json"])),
            json!(["b2", "c3"])
        );
        let ambiguous = project.run(&db, &["up"]).fails_with(GRAPH);
        assert_run!(
            "up_with_two_heads_refused",
            backend,
            shown(&ambiguous, &project, Some(&db))
        );
        assert!(db.heads().await.is_empty(), "{backend:?}: nothing ran");
        assert_eq!(plan(&project, &db, &["up", "heads"]), ["+a1", "+c3", "+b2"]);
        project.run(&db, &["up", "heads"]).success();
        assert_eq!(db.heads().await, ["b2", "c3"]);
        assert_eq!(tables(&db, &all).await, ["a1", "b2", "c3"]);
        let branches = project.run_plain(&["branches", "--json"]).success().json();
        assert_eq!(
            branches["branches"],
            json!([{ "revision": "a1", "next_revisions": ["b2", "c3"] }])
        );

        // -1 from two heads is refused (Alembic only warns); REV@-1 names the branch.
        let minus = project.run(&db, &["down"]).fails_with(GRAPH);
        assert_run!(
            "down_one_from_two_heads_refused",
            backend,
            shown(&minus, &project, Some(&db))
        );
        assert_eq!(plan(&project, &db, &["down", "c3@-1"]), ["-c3"]);
        // REV-1 is a revision (a1), and going down to a branch point removes both branches.
        assert_eq!(plan(&project, &db, &["down", "c3-1"]), ["-b2", "-c3"]);

        // Merge the two heads; upgrading runs only the merge point.
        let merged = project
            .run_plain(&["merge", "heads", "-m", "merge", "--rev-id", "d4", "--json"])
            .success();
        let d4 = PathBuf::from(merged.json()["directory"].as_str().unwrap());
        std::fs::write(d4.join("up.sql"), "CREATE TABLE t_d4 (n int);").unwrap();
        std::fs::write(d4.join("down.sql"), "DROP TABLE t_d4;").unwrap();
        let show = project
            .run_plain(&["show", "d4", "--json"])
            .success()
            .json();
        assert_eq!(show["down_revisions"], json!(["b2", "c3"]));
        assert_eq!(show["is_merge_point"], json!(true));
        project.run_plain(&["check", "--single-head"]).success();
        assert_eq!(plan(&project, &db, &["up"]), ["+d4"]);
        project.run(&db, &["up"]).success();
        assert_eq!(db.heads().await, ["d4"]);

        // Downgrading to the branch point removes both branches and the merge.
        assert_eq!(plan(&project, &db, &["down", "a1"]), ["-d4", "-b2", "-c3"]);
        // Down to one side of the merge leaves two heads again.
        project.run(&db, &["down", "b2"]).success();
        assert_eq!(db.heads().await, ["b2", "c3"]);
        assert_eq!(tables(&db, &all).await, ["a1", "b2", "c3"]);
        project.run(&db, &["down", "a1"]).success();
        assert_eq!(db.heads().await, ["a1"]);
        assert_eq!(tables(&db, &all).await, ["a1"]);
        let not_below = project.run(&db, &["down", "d4"]).fails_with(GRAPH);
        assert_run!(
            "down_to_a_descendant_refused",
            backend,
            shown(&not_below, &project, Some(&db))
        );

        // A second root with a branch label, and a dependency on it from the main line.
        rev(&project, "e5", &["--head", "base", "--branch-label", "net"]);
        rev(&project, "f6", &["--head", "net@head"]);
        rev(&project, "g7", &["--head", "d4", "--depends-on", "net"]);
        let g7 = project
            .run_plain(&["show", "g7", "--json"])
            .success()
            .json();
        assert_eq!(g7["depends_on"], json!(["net"]));
        assert_eq!(g7["down_revisions"], json!(["d4"]));
        let f6 = project
            .run_plain(&["show", "net@head", "--json"])
            .success()
            .json();
        assert_eq!(f6["revision"], "f6");
        assert_eq!(f6["branch_labels"], json!(["net"]));
        assert_eq!(plan(&project, &db, &["up", "net@+1"]), ["+e5"]);
        project.run(&db, &["up", "net@head"]).success();
        assert_eq!(db.heads().await, ["a1", "f6"]);
        // g7 needs its dependency's branch (applied) and its own line.
        assert_eq!(
            plan(&project, &db, &["up", "g7"]),
            ["+c3", "+b2", "+d4", "+g7"]
        );
        project.run(&db, &["up", "heads"]).success();
        // `depends_on = "net"` means the revision declaring the label (e5), which g7 now
        // implies; f6 stays a head of its own.
        assert_eq!(db.heads().await, ["f6", "g7"]);
        assert_eq!(tables(&db, &all).await, all);
        // Taking the labelled branch down takes its dependent with it.
        assert_eq!(
            plan(&project, &db, &["down", "net@base"]),
            ["-f6", "-g7", "-e5"]
        );
        project.run(&db, &["down", "net@base"]).success();
        assert_eq!(db.heads().await, ["d4"]);
        assert_eq!(tables(&db, &all).await, ["a1", "b2", "c3", "d4"]);

        // Stamp moves the version table only, and is recorded.
        let stamped = project
            .run(&db, &["stamp", "c3", "--json"])
            .success()
            .json();
        assert_eq!(stamped["heads"], json!(["c3"]));
        assert_eq!(db.heads().await, ["c3"]);
        assert_eq!(tables(&db, &all).await, ["a1", "b2", "c3", "d4"]);
        project.run(&db, &["stamp", "base"]).success();
        assert!(db.heads().await.is_empty());
        let log = db.history().await;
        assert_eq!(log[log.len() - 2..], ["stamp:c3", "stamp:base"]);
        project.run(&db, &["stamp", "heads"]).success();
        assert_eq!(db.heads().await, ["f6", "g7"]);

        // History: from the heads down, with branch and merge points marked.
        let history = project.run_plain(&["history", "-r", "a1:d4"]).success();
        let ids: Vec<&str> = history
            .stdout
            .lines()
            .map(|l| {
                l.split(" -> ")
                    .nth(1)
                    .unwrap()
                    .split([' ', ','])
                    .next()
                    .unwrap()
            })
            .collect();
        assert_eq!(ids, ["d4", "b2", "c3", "a1"], "{history:?}");
        assert_run!(
            "history_marks_branch_and_merge_points",
            shown(&history, &project, None)
        );
        let current = project
            .run(&db, &["history", "-r", "current:", "-i"])
            .success();
        assert_run!(
            "history_from_current_marks_it",
            backend,
            shown(&current, &project, Some(&db))
        );
        let verbose = project
            .run_plain(&["history", "--verbose", "-r", "d4:d4"])
            .success();
        assert_run!(
            "history_verbose_lists_merges",
            shown(&verbose, &project, None)
        );
        db.drop_db().await;
    }
}

#[tokio::test]
async fn graph_errors_name_the_revisions_and_exit_4() {
    let project = TestProject::new();
    let db = TestDb::new(crate::support::Backend::Sqlite, &project).await;
    rev(&project, "abc1", &[]);
    let abd2 = rev(&project, "abd2", &[]);

    let ambiguous = project.run(&db, &["up", "ab"]).fails_with(GRAPH);
    let show = |run: &Run| shown(run, &project, Some(&db));
    assert_run!("ambiguous_prefix", show(&ambiguous));
    let missing = project.run(&db, &["show", "zz"]).fails_with(GRAPH);
    assert_run!("unknown_revision", show(&missing));
    let past = project.run(&db, &["up", "+3"]).fails_with(GRAPH);
    assert_run!("relative_target_past_the_end", show(&past));
    let wrong = project.run(&db, &["up", "-1"]).fails_with(GRAPH);
    assert_run!("up_to_a_downward_target", show(&wrong));
    let no_branch = project.run(&db, &["up", "nope@head"]).fails_with(GRAPH);
    assert_run!("unknown_branch", show(&no_branch));
    // A taken label is a graph error like a duplicate label in the manifests (exit 4).
    let taken = project
        .run_plain(&["revision", "-m", "x", "--branch-label", "abc1"])
        .fails_with(GRAPH);
    assert_run!("branch_label_taken", show(&taken));
    let dep = project
        .run_plain(&["revision", "-m", "x", "--depends-on", "nothing"])
        .fails_with(GRAPH);
    assert_run!("unknown_dependency", show(&dep));
    let lonely = project
        .run_plain(&["merge", "abd2", "-m", "x"])
        .fails_with(GRAPH);
    assert_run!("merge_of_one_revision", show(&lonely));

    // A cycle through the manifests.
    let manifest = abd2.join("migration.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let first = project
        .run_plain(&["show", "abc1", "--json"])
        .success()
        .json();
    let abc1 = PathBuf::from(first["directory"].as_str().unwrap());
    let abc1_manifest = abc1.join("migration.toml");
    let abc1_text = std::fs::read_to_string(&abc1_manifest).unwrap();
    std::fs::write(
        &abc1_manifest,
        format!("down_revision = \"abd2\"\n{abc1_text}"),
    )
    .unwrap();
    let cycle = project.run(&db, &["check"]).fails_with(GRAPH);
    assert_run!("cycle", show(&cycle));
    std::fs::write(&abc1_manifest, abc1_text).unwrap();

    // A missing down revision, a duplicate label, an unknown dependency.
    std::fs::write(
        &manifest,
        text.replace("down_revision = \"abc1\"", "down_revision = \"gone\""),
    )
    .unwrap();
    let gone = project.run(&db, &["up"]).fails_with(GRAPH);
    assert_run!("missing_down_revision", show(&gone));
    std::fs::write(&manifest, format!("branch_labels = \"x\"\n{text}")).unwrap();
    let y3 = rev(&project, "y3", &[]);
    let y3_text = std::fs::read_to_string(y3.join("migration.toml")).unwrap();
    std::fs::write(
        y3.join("migration.toml"),
        format!("branch_labels = \"x\"\n{y3_text}"),
    )
    .unwrap();
    let dup = project.run(&db, &["heads"]).fails_with(GRAPH);
    assert_run!("duplicate_branch_label", show(&dup));
    std::fs::write(
        y3.join("migration.toml"),
        format!("depends_on = \"ghost\"\n{y3_text}"),
    )
    .unwrap();
    let ghost = project.run(&db, &["heads"]).fails_with(GRAPH);
    assert_run!("dependency_not_found", show(&ghost));
    db.drop_db().await;
}

#[tokio::test]
async fn version_tables_from_before_stamp_are_widened_keeping_their_rows() {
    for backend in BOTH {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        rev(&project, "a1", &[]);
        // The history table as wasmig 0.1 created it, with one row.
        let (id, time) = match backend {
            crate::support::Backend::Postgres => (
                "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
                "TIMESTAMPTZ",
            ),
            crate::support::Backend::Mysql => {
                unreachable!("wasmig never made versionless tables on MySQL")
            }
            crate::support::Backend::Sqlite => ("INTEGER PRIMARY KEY AUTOINCREMENT", "TEXT"),
        };
        db.exec(&format!(
            "CREATE TABLE wasmig_version (revision TEXT PRIMARY KEY);
             CREATE TABLE wasmig_history (
                 id {id}, revision TEXT NOT NULL,
                 direction TEXT NOT NULL CHECK (direction IN ('upgrade', 'downgrade')),
                 checksum TEXT NOT NULL, started_at {time} NOT NULL, finished_at {time} NOT NULL,
                 duration_ms BIGINT NOT NULL, wasmig_version TEXT NOT NULL);
             INSERT INTO wasmig_history (revision, direction, checksum, started_at, finished_at, duration_ms, wasmig_version)
             VALUES ('old', 'upgrade', '', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', 0, '0.1.0');"
        ))
        .await;
        project.run(&db, &["stamp", "a1"]).success();
        assert_eq!(db.heads().await, ["a1"], "{backend:?}");
        assert_eq!(
            db.history().await,
            ["upgrade:old", "stamp:a1"],
            "{backend:?}"
        );
        // Widened once: a second run changes nothing.
        project.run(&db, &["stamp", "base"]).success();
        assert_eq!(db.history().await.len(), 3);
        db.drop_db().await;
    }
}

/// Writes the scripts of a revision made by `wasmig merge`.
fn merge_rev(project: &TestProject, id: &str, heads: &[&str]) {
    let mut args = vec!["merge"];
    args.extend_from_slice(heads);
    args.extend(["-m", id, "--rev-id", id, "--json"]);
    let run = project.run_plain(&args).success();
    let dir = PathBuf::from(run.json()["directory"].as_str().unwrap());
    std::fs::write(dir.join("up.sql"), format!("CREATE TABLE t_{id} (n int);")).unwrap();
    std::fs::write(dir.join("down.sql"), format!("DROP TABLE t_{id};")).unwrap();
}

/// The graph of the review: aaaa -> bbbb -> cccc (branch point) -> d1d1 (label `one`) ->
/// e1e1; cccc -> d2d2; (e1e1, d2d2) -> mmmm (merge) -> nnnn.
fn review_graph(project: &TestProject) {
    rev(project, "aaaa", &[]);
    rev(project, "bbbb", &[]);
    rev(project, "cccc", &[]);
    rev(project, "d1d1", &["--branch-label", "one"]);
    rev(project, "e1e1", &[]);
    rev(project, "d2d2", &["--head", "cccc", "--splice"]);
    merge_rev(project, "mmmm", &["e1e1", "d2d2"]);
    rev(project, "nnnn", &[]);
}

fn resolved(project: &TestProject, target: &str) -> String {
    let out = project
        .run_plain(&["show", target, "--json"])
        .success()
        .json();
    out["revision"].as_str().unwrap().to_owned()
}

/// The ids `history` lists, in order.
fn history_ids(run: Run) -> Vec<String> {
    run.success().json()["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["revision"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn show_heads_shows_every_head_and_several_heads_say_what_to_write_instead() {
    let project = TestProject::new();
    // base1 -> left (label `l`); base1 -> right (label `r`): two heads.
    rev(&project, "base1", &[]);
    rev(&project, "left", &["--branch-label", "l"]);
    rev(
        &project,
        "right",
        &["--head", "base1", "--splice", "--branch-label", "r"],
    );
    // As Alembic's `show heads`: every head, each with its log entry.
    let text = project.run_plain(&["show", "heads"]).success();
    assert_run!("show_heads", shown(&text, &project, None));
    let ids = |out: serde_json::Value| -> Vec<String> {
        out["revisions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["revision"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = project.run_plain(&["show", "heads", "--json"]).success();
    assert_eq!(ids(all.json()), ["left", "right"]);
    // `LABEL@heads` keeps the list shape even when it names one revision.
    let one = project.run_plain(&["show", "r@heads", "--json"]).success();
    assert_eq!(ids(one.json()), ["right"]);
    // `head` needs one: the error names both and says to name one or take them all.
    let head = project.run_plain(&["show", "head"]).fails_with(GRAPH);
    assert_run!("show_head_with_two_heads", shown(&head, &project, None));
    // A walk down from several heads says how to pick the branch instead.
    let down = project.run_plain(&["show", "-1"]).fails_with(GRAPH);
    assert_run!(
        "show_minus_one_with_two_heads",
        shown(&down, &project, None)
    );
    assert_eq!(resolved(&project, "l@-1"), "base1");
    // A label wasmig could never resolve is a bad command line (exit 2), and nothing is made.
    let listing = || {
        let mut names: Vec<_> = std::fs::read_dir(project.dir.join("versions"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    let before = listing();
    for (name, bad) in [
        ("branch_label_head", "head"),
        ("branch_label_with_a_space", "a b"),
        ("branch_label_empty", ""),
    ] {
        let refused = project
            .run_plain(&["revision", "-m", "x", "--branch-label", bad])
            .fails_with(2);
        assert_run!(name, shown(&refused, &project, None));
    }
    assert_eq!(listing(), before);
    let heads = project.run_plain(&["heads", "--json"]).success().json();
    assert_eq!(heads["heads"], json!(["left", "right"]));
}

#[test]
fn show_and_history_ranges_read_relative_targets_as_alembic_does() {
    let project = TestProject::new();
    review_graph(&project);
    // Alembic's get_revisions: `-N` counts down from the head (of the branch).
    assert_eq!(resolved(&project, "-1"), "mmmm");
    assert_eq!(resolved(&project, "one@-1"), "mmmm");
    assert_eq!(resolved(&project, "nnnn-1"), "mmmm");
    assert_eq!(resolved(&project, "e1e1-2"), "cccc");
    assert_eq!(resolved(&project, "aaaa+1"), "bbbb");
    assert_eq!(resolved(&project, "one@head"), "nnnn");
    assert_eq!(resolved(&project, "one"), "d1d1");
    let walk = project.run_plain(&["show", "-2"]).fails_with(GRAPH);
    let show = |run: &Run| shown(run, &project, None);
    assert_run!("show_walk_through_a_merge", show(&walk));
    let plus = project.run_plain(&["show", "+1"]).fails_with(GRAPH);
    assert_run!("show_plus_one", show(&plus));
    let label_plus = project.run_plain(&["show", "one@+1"]).fails_with(GRAPH);
    assert_run!("show_label_plus_one", show(&label_plus));
    let base = project.run_plain(&["show", "base"]).fails_with(GRAPH);
    assert_run!("show_base", show(&base));
    let range = |r: &str| history_ids(project.run_plain(&["history", "-r", r, "--json"]));
    assert_eq!(range("-1:nnnn"), ["nnnn", "mmmm"]);
    assert_eq!(range("one@-1:nnnn"), ["nnnn", "mmmm"]);
    assert_eq!(range("d1d1:+1"), ["e1e1", "d1d1"]);
    assert_eq!(range("cccc:one@+1"), ["d1d1", "cccc"]);
    assert_eq!(range("d1d1:+9"), ["nnnn", "mmmm", "e1e1", "d1d1"]);
    assert_eq!(range("aaaa:d1d1"), ["d1d1", "cccc", "bbbb", "aaaa"]);
    for (r, name) in [
        ("d1d1:d2d2", "history_range_across_branches"),
        ("cccc:base", "history_range_down_to_base"),
        ("bbbb:-1", "history_range_ending_in_minus_one"),
        ("+1:", "history_range_from_plus_one"),
    ] {
        let run = project.run_plain(&["history", "-r", r]).fails_with(GRAPH);
        assert_run!(name, show(&run));
        assert!(!run.stderr.contains("database is at base"), "{r}: {run:?}");
    }
    // Ids of 3 characters or fewer match only in full, as in Alembic.
    rev(&project, "zz9", &["--head", "base"]);
    let short = project.run_plain(&["show", "zz"]).fails_with(GRAPH);
    assert_run!("short_prefix", show(&short));
}

#[test]
fn history_ranges_on_a_chain_count_from_the_head_and_from_start() {
    let project = TestProject::new();
    for id in ["a111", "b222", "c333", "d444", "e555"] {
        rev(&project, id, &[]);
    }
    let range = |r: &str| history_ids(project.run_plain(&["history", "-r", r, "--json"]));
    assert_eq!(range("-2:heads"), ["e555", "d444", "c333"]);
    assert_eq!(range("-1:e555"), ["e555", "d444"]);
    assert_eq!(range("-2:c333"), ["c333"]);
    assert_eq!(range("b222:+2"), ["d444", "c333", "b222"]);
    assert_eq!(range(":+2"), ["b222", "a111"]);
}

#[test]
fn revision_head_and_depends_on_take_relative_targets() {
    let project = TestProject::new();
    review_graph(&project);
    let down = |id: &str| {
        project.run_plain(&["show", id, "--json"]).success().json()["down_revisions"].clone()
    };
    // REV-N names a revision that is not a head: --splice, as for any non-head.
    let refused = project
        .run_plain(&["revision", "-m", "x", "--head", "nnnn-1"])
        .fails_with(GRAPH);
    let show = |run: &Run| shown(run, &project, None);
    assert_run!("revision_on_a_relative_non_head", show(&refused));
    rev(&project, "s1s1", &["--head", "nnnn-1", "--splice"]);
    assert_eq!(down("s1s1"), json!(["mmmm"]));
    let plus = project
        .run_plain(&["revision", "-m", "x", "--head", "+1"])
        .fails_with(GRAPH);
    assert_run!("revision_on_plus_one", show(&plus));
    // Two heads now (nnnn, s1s1): `-1` is ambiguous and says which heads.
    let two = project
        .run_plain(&["revision", "-m", "x", "--head", "-1", "--splice"])
        .fails_with(GRAPH);
    assert_run!("revision_on_minus_one_with_two_heads", show(&two));
    rev(&project, "s2s2", &["--head", "one@nnnn-1", "--splice"]);
    assert_eq!(down("s2s2"), json!(["mmmm"]));
    // --depends-on reads the same forms (Alembic: not found).
    rev(
        &project,
        "t1t1",
        &["--head", "s1s1", "--depends-on", "e1e1-1"],
    );
    let t1 = project
        .run_plain(&["show", "t1t1", "--json"])
        .success()
        .json();
    assert_eq!(t1["depends_on"], json!(["d1d1"]));

    // merge: a non-head gets merge's own message (merge takes --splice, as Alembic's).
    let not_head = project
        .run_plain(&["merge", "cccc", "t1t1", "-m", "x"])
        .fails_with(GRAPH);
    assert_run!("merge_of_a_non_head", show(&not_head));
    project
        .run_plain(&[
            "merge", "cccc", "t1t1", "-m", "x", "--rev-id", "u1u1", "--splice",
        ])
        .success();
    assert_eq!(down("u1u1"), json!(["cccc", "t1t1"]));
}

#[test]
fn heads_resolve_dependencies_leaves_out_heads_another_revision_depends_on() {
    let project = TestProject::new();
    rev(&project, "a1", &[]);
    rev(&project, "n1", &["--head", "base", "--branch-label", "net"]);
    rev(&project, "a2", &["--head", "a1", "--depends-on", "net"]);
    // n1 is a head by down revisions (nothing follows it), but a2 depends on it.
    let mut all: Vec<String> =
        serde_json::from_value(heads_json(project.run_plain(&["heads", "--json"]))).unwrap();
    all.sort();
    assert_eq!(all, ["a2", "n1"]);
    assert_eq!(
        heads_json(project.run_plain(&["heads", "--resolve-dependencies", "--json"])),
        json!(["a2"])
    );
    let text = project
        .run_plain(&["heads", "--resolve-dependencies"])
        .success();
    assert_run!("heads_resolving_dependencies", shown(&text, &project, None));
    assert!(!text.stdout.contains("n1"), "{text:?}");
}

#[tokio::test]
async fn stamp_takes_relative_and_several_targets_and_purge_on_both_backends() {
    for backend in ALL {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        review_graph(&project);
        let stamp = |args: &[&str]| {
            let mut all = vec!["stamp", "--json"];
            all.extend_from_slice(args);
            heads_json(project.run(&db, &all))
        };
        // Relative forms read as in `show`: `-N` from the head, REV-N / REV+N from REV.
        assert_eq!(stamp(&["-1"]), json!(["mmmm"]), "{backend:?}");
        assert_eq!(db.heads().await, ["mmmm"]);
        assert_eq!(stamp(&["nnnn"]), json!(["nnnn"]));
        assert_eq!(stamp(&["nnnn-1"]), json!(["mmmm"]));
        assert_eq!(stamp(&["one@-1"]), json!(["mmmm"]));
        assert_eq!(stamp(&["aaaa+1"]), json!(["bbbb"]));
        assert_eq!(db.heads().await, ["bbbb"]);
        for (refused, name) in [
            ("+1", "stamp_plus_one"),
            ("aaaa@+1", "stamp_revision_at_plus_one"),
            ("one@+1", "stamp_label_at_plus_one"),
        ] {
            let run = project.run(&db, &["stamp", refused]).fails_with(GRAPH);
            assert_run!(name, backend, shown(&run, &project, Some(&db)));
        }
        let walk = project.run(&db, &["stamp", "-2"]).fails_with(GRAPH);
        assert_run!(
            "stamp_walk_through_a_merge",
            backend,
            shown(&walk, &project, Some(&db))
        );
        assert_eq!(db.heads().await, ["bbbb"], "refusals change nothing");

        // Several targets: one head on each branch, then one replaces both sides.
        assert_eq!(stamp(&["d2d2", "e1e1"]), json!(["d2d2", "e1e1"]));
        assert_eq!(db.heads().await, ["d2d2", "e1e1"]);
        assert_eq!(stamp(&["e1e1-1"]), json!(["d1d1", "d2d2"]));
        assert_eq!(stamp(&["mmmm"]), json!(["mmmm"]));
        // Two targets on one line keep only the upper one.
        assert_eq!(stamp(&["base"]), json!([]));
        assert_eq!(stamp(&["bbbb", "d1d1"]), json!(["d1d1"]));

        // `show current` reads the database, as in Alembic.
        assert_eq!(stamp(&["d2d2", "e1e1"]), json!(["d2d2", "e1e1"]));
        let current = project
            .run(&db, &["show", "current", "--json"])
            .success()
            .json();
        let ids: Vec<&str> = current["revisions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["revision"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["d2d2", "e1e1"], "{backend:?}");
        let text = project.run(&db, &["show", "current"]).success();
        assert_run!(
            "show_current_with_two_heads",
            backend,
            shown(&text, &project, Some(&db))
        );

        // `rehash -1` means one below the head, like `show -1`; with two heads it names them.
        project.run(&db, &["stamp", "nnnn"]).success();
        let rehashed = project
            .run(&db, &["rehash", "-1", "--json"])
            .success()
            .json();
        assert_eq!(rehashed["rehashed"], json!(["mmmm"]), "{backend:?}");

        // An unknown stored head: stamp points at --purge, which replaces it.
        db.exec("INSERT INTO wasmig_version (revision) VALUES ('gone')")
            .await;
        let unknown = project.run(&db, &["stamp", "bbbb"]).fails_with(GRAPH);
        assert_run!(
            "stamp_with_an_unknown_stored_head",
            backend,
            shown(&unknown, &project, Some(&db))
        );
        assert!(!unknown.stderr.contains("wasmig down"), "{unknown:?}");
        assert_eq!(db.heads().await, ["gone", "nnnn"]);
        assert_eq!(stamp(&["--purge", "bbbb"]), json!(["bbbb"]));
        assert_eq!(db.heads().await, ["bbbb"]);
        let log = db.history().await;
        assert_eq!(log.last().unwrap(), "stamp:bbbb", "{backend:?}: {log:?}");
        assert_eq!(tables(&db, &["aaaa", "bbbb"]).await, Vec::<String>::new());
        db.drop_db().await;
    }
}

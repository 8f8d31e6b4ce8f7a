//! `wasmig lint`: squawk's rules on PostgreSQL and wasmig's own on both backends, the
//! manifest's ignores, the three output formats, exit 15 for findings. Lint never connects:
//! the PostgreSQL URL here points at a port nothing listens on.

use std::path::Path;

use crate::support::{Run, TestProject, no_transaction};

const CONFIG: i32 = 3;
const LINT_FINDINGS: i32 = 15;

/// A PostgreSQL URL nothing answers: the dialect is taken from it, nothing connects.
const NOWHERE: &str = "postgres://postgres@127.0.0.1:1/nowhere";

const CREATE_T: &str = "CREATE TABLE t (id bigint PRIMARY KEY, name text NOT NULL);\n";
const DROP_T: &str = "DROP TABLE t;\n";

/// `wasmig lint ARGS` for PostgreSQL.
fn lint_pg(project: &TestProject, args: &[&str]) -> Run {
    let mut all = vec!["lint", "--database-url", NOWHERE];
    all.extend_from_slice(args);
    project.run_plain(&all)
}

/// Gives the project the statement and lock timeouts wasmig sets for each step (which
/// answer squawk's timeout rules).
fn with_timeouts(project: &TestProject) {
    std::fs::write(
        project.dir.join("wasmig.toml"),
        "[timeouts]\nlock_timeout_secs = 2\nstatement_timeout_secs = 60\n",
    )
    .unwrap();
}

/// A project of `a1` (creates `t`) and `b2` (a column without a default, an index built
/// with the table locked).
fn dangerous_project() -> (TestProject, std::path::PathBuf, std::path::PathBuf) {
    let project = TestProject::new();
    let a1 = project.sql_revision("a1", CREATE_T, DROP_T);
    let b2 = project.sql_revision(
        "b2",
        "ALTER TABLE t ADD COLUMN email text NOT NULL;\nCREATE INDEX t_name ON t (name);\n",
        "DROP INDEX t_name;\nALTER TABLE t DROP COLUMN email;\n",
    );
    (project, a1, b2)
}

/// The rules of the JSON report's findings, as `revision rule line`.
fn findings(run: &Run) -> Vec<String> {
    run.json()["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| format!("{} {} {}", f["revision"], f["rule"], f["line"]).replace('"', ""))
        .collect()
}

#[test]
fn dangerous_operations_are_named_with_their_revision_file_and_line_on_postgres() {
    let (project, _, b2) = dangerous_project();
    let run = lint_pg(&project, &[]).fails_with(LINT_FINDINGS);
    let up = b2.join("up.sql");
    let up = up.strip_prefix(&project.dir).unwrap().display().to_string();
    assert!(
        run.stdout.contains(&format!(
            "{up}:1:15: adding-required-field (squawk, revision b2)"
        )),
        "{run:?}"
    );
    assert!(
        run.stdout.contains(&format!(
            "{up}:2:1: require-concurrent-index-creation (squawk, revision b2)"
        )),
        "{run:?}"
    );
    // No timeout configured: squawk asks for one before a statement that takes a lock.
    assert!(
        run.stdout.contains(&format!(
            "{up}:1:1: require-lock-timeout (squawk, revision b2)"
        )),
        "{run:?}"
    );
    assert!(run.stdout.contains("  help: "), "{run:?}");
    assert!(
        run.stderr.contains("lint: ") && run.stderr.contains("in 1 revision(s)"),
        "{run:?}"
    );
    // a1 (a new table) has no finding of its own.
    assert!(!run.stdout.contains("revision a1"), "{run:?}");

    let json = lint_pg(&project, &["--json"]).fails_with(LINT_FINDINGS);
    let found = findings(&json);
    assert!(
        found.contains(&"b2 adding-required-field 1".to_owned()),
        "{found:?}"
    );
    assert!(
        found.contains(&"b2 require-concurrent-index-creation 2".to_owned()),
        "{found:?}"
    );
    assert_eq!(json.json()["ok"], false);
    assert_eq!(json.json()["linted"], 2);
    assert_eq!(json.json()["dialect"], "postgres");

    let github = lint_pg(&project, &["--format", "github"]).fails_with(LINT_FINDINGS);
    let line = github
        .stdout
        .lines()
        .find(|l| l.contains("require-concurrent-index-creation"))
        .unwrap_or_else(|| panic!("{github:?}"));
    assert!(
        line.starts_with(&format!("::error file={up},line=2,col=1,endLine=2,")),
        "{line}"
    );
    assert!(
        line.contains("title=wasmig lint%3A require-concurrent-index-creation (b2)::"),
        "{line}"
    );
    assert!(
        line.contains("%0Ahelp%3A ") || line.contains("%0Ahelp: "),
        "{line}"
    );

    // One revision named: only it is linted.
    let only_a1 = lint_pg(&project, &["a1", "--json"]).success();
    assert_eq!(only_a1.json()["linted"], 1, "{only_a1:?}");
}

#[test]
fn a_manifest_ignores_a_rule_only_with_a_reason_and_an_unused_ignore_is_a_finding() {
    let (project, a1, b2) = dangerous_project();
    with_timeouts(&project);
    let manifest = b2.join("migration.toml");
    let original = std::fs::read_to_string(&manifest).unwrap();
    project.set_manifest(
        &b2,
        "[[lint.ignore]]\nrule = \"require-concurrent-index-creation\"\nreason = \"t is empty when b2 runs\"\n\
         [[lint.ignore]]\nrule = \"adding-required-field\"\nreason = \"no row exists yet\"",
    );
    let run = lint_pg(&project, &["--json"]).success();
    assert_eq!(run.json()["findings"], serde_json::json!([]), "{run:?}");
    let ignored = &run.json()["ignored"];
    assert_eq!(ignored[0]["rule"], "require-concurrent-index-creation");
    assert_eq!(ignored[0]["reason"], "t is empty when b2 runs");
    assert_eq!(ignored[0]["count"], 1);
    let human = lint_pg(&project, &[]).success();
    assert!(
        human.stdout.contains(
            "ignored: b2 require-concurrent-index-creation (1 finding(s)): t is empty when b2 runs"
        ),
        "{human:?}"
    );

    // An ignore without a reason, or of a rule that does not exist, is a configuration error.
    std::fs::write(&manifest, &original).unwrap();
    project.set_manifest(
        &b2,
        "[[lint.ignore]]\nrule = \"require-concurrent-index-creation\"\nreason = \" \"",
    );
    let run = lint_pg(&project, &[]).fails_with(CONFIG);
    assert!(run.stderr.contains("has no reason"), "{run:?}");
    std::fs::write(&manifest, &original).unwrap();
    project.set_manifest(
        &b2,
        "[[lint.ignore]]\nrule = \"no-such-rule\"\nreason = \"x\"",
    );
    let run = lint_pg(&project, &[]).fails_with(CONFIG);
    assert!(
        run.stderr.contains("\"no-such-rule\" is not a rule"),
        "{run:?}"
    );

    // An ignore that matches nothing is reported, so it cannot hide a later finding.
    std::fs::write(&manifest, &original).unwrap();
    project.set_manifest(
        &a1,
        "[[lint.ignore]]\nrule = \"ban-drop-column\"\nreason = \"old\"",
    );
    let run = lint_pg(&project, &["a1", "--json"]).fails_with(LINT_FINDINGS);
    assert_eq!(findings(&run), ["a1 unused-lint-ignore 1"], "{run:?}");

    // Only where the rule runs: SQLite's and MySQL's lints never run squawk's rules, so a
    // project for several databases keeps its PostgreSQL ignores (the example project does).
    std::fs::write(&manifest, &original).unwrap();
    project.set_manifest(
        &b2,
        "[[lint.ignore]]\nrule = \"require-concurrent-index-creation\"\nreason = \"t is empty when b2 runs\"",
    );
    let run = project
        .run_plain(&["lint", "--database-url", "sqlite:lint.db", "--json"])
        .success();
    assert_eq!(run.json()["dialect"], "sqlite", "{run:?}");
    assert_eq!(findings(&run), Vec::<String>::new(), "{run:?}");
    assert_eq!(run.json()["ignored"], serde_json::json!([]), "{run:?}");
    // Nor when `[lint] exclude` turns the rule off.
    std::fs::write(
        project.dir.join("wasmig.toml"),
        "[timeouts]\nlock_timeout_secs = 2\nstatement_timeout_secs = 60\n\
         [lint]\nexclude = [\"require-concurrent-index-creation\", \"adding-required-field\"]\n",
    )
    .unwrap();
    let run = lint_pg(&project, &["b2", "--json"]).success();
    assert_eq!(findings(&run), Vec::<String>::new(), "{run:?}");
}

#[test]
fn what_wasmig_knows_about_a_revision_changes_what_is_dangerous() {
    let project = TestProject::new();
    with_timeouts(&project);
    project.sql_revision("a1", CREATE_T, DROP_T);
    // CONCURRENTLY inside wasmig's transaction fails at run time...
    project.sql_revision(
        "b2",
        "CREATE INDEX CONCURRENTLY t_name ON t (name);\n",
        "DROP INDEX t_name;\n",
    );
    // ...and is what transaction = "none" is for; two statements there are not atomic.
    let c3 = project.sql_revision(
        "c3",
        "CREATE INDEX CONCURRENTLY t_id_name ON t (id, name);\n",
        "DROP INDEX CONCURRENTLY t_id_name;\n",
    );
    no_transaction(&c3);
    let d4 = project.sql_revision(
        "d4",
        "CREATE INDEX CONCURRENTLY t_a ON t (name, id);\nCREATE INDEX CONCURRENTLY t_b ON t (id, id);\n",
        "SELECT 1;\n",
    );
    no_transaction(&d4);
    // One statement is enough: squawk alone passes a script of one statement.
    project.sql_revision("e5", "VACUUM t;\n", "SELECT 1;\n");
    let run = lint_pg(&project, &["--json"]).fails_with(LINT_FINDINGS);
    let found = findings(&run);
    assert!(
        found.contains(&"b2 no-transaction-required 1".to_owned()),
        "{found:?}"
    );
    assert!(
        found.contains(&"e5 no-transaction-required 1".to_owned()),
        "{found:?}"
    );
    assert!(
        !found.iter().any(|f| f.starts_with("c3 no-transaction")),
        "{found:?}"
    );
    assert!(
        found.contains(&"d4 non-atomic-revision 2".to_owned()),
        "{found:?}"
    );
    let d4_finding = run.json()["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "non-atomic-revision")
        .unwrap()
        .clone();
    assert_eq!(d4_finding["by"], "wasmig");
    assert!(
        d4_finding["message"]
            .as_str()
            .unwrap()
            .contains("runs 2 statements outside a transaction"),
        "{d4_finding}"
    );

    // --down lints the down scripts too (c3's DROP INDEX is fine outside a transaction;
    // a1's DROP TABLE is not something to run on a live database).
    let run = lint_pg(&project, &["--down", "--json"]).fails_with(LINT_FINDINGS);
    let found = findings(&run);
    assert!(
        found.contains(&"a1 ban-drop-table 1".to_owned()),
        "{found:?}"
    );
}

#[test]
fn the_timeouts_wasmig_sets_answer_the_timeout_rules() {
    let project = TestProject::new();
    project.sql_revision("a1", CREATE_T, DROP_T);
    project.sql_revision("b2", "ALTER TABLE t ADD COLUMN note text;\n", "SELECT 1;\n");
    let config = project.dir.join("wasmig.toml");
    std::fs::write(
        &config,
        "[lint]\ninclude = [\"require-timeout-settings\"]\n",
    )
    .unwrap();
    let run = lint_pg(&project, &["b2", "--json"]).fails_with(LINT_FINDINGS);
    let found = findings(&run);
    assert!(
        found.contains(&"b2 require-lock-timeout 1".to_owned()),
        "{found:?}"
    );
    assert!(
        found.contains(&"b2 require-statement-timeout 1".to_owned()),
        "{found:?}"
    );
    // wasmig sets both for the step: nothing left to flag.
    std::fs::write(
        &config,
        "[lint]\ninclude = [\"require-timeout-settings\"]\n\n[timeouts]\nlock_timeout_secs = 2\nstatement_timeout_secs = 60\n",
    )
    .unwrap();
    lint_pg(&project, &["b2"]).success();
    // An unknown rule in [lint] is a configuration error.
    std::fs::write(&config, "[lint]\nexclude = [\"nope\"]\n").unwrap();
    let run = lint_pg(&project, &[]).fails_with(CONFIG);
    assert!(run.stderr.contains("\"nope\""), "{run:?}");
}

#[test]
fn on_sqlite_only_wasmigs_rules_apply_and_components_are_listed_as_not_linted() {
    let (project, _, _) = dangerous_project();
    let c3 = project.sql_revision(
        "c3",
        "CREATE TABLE u (x int);\nCREATE TABLE v (x int);\n",
        "SELECT 1;\n",
    );
    no_transaction(&c3);
    project.wasm_revision("d4", Path::new(crate::test_guest::SCENARIO));
    // No database URL: the embedded SQLite default.
    let run = project
        .run_plain(&["lint", "--json"])
        .fails_with(LINT_FINDINGS);
    assert_eq!(run.json()["dialect"], "sqlite");
    assert_eq!(findings(&run), ["c3 non-atomic-revision 2"], "{run:?}");
    assert_eq!(run.json()["not_linted"][0]["revision"], "d4", "{run:?}");
    let human = project.run_plain(&["lint", "a1", "b2", "d4"]).success();
    assert!(
        human.stdout.contains("only wasmig's rules apply"),
        "{human:?}"
    );
    assert!(
        human
            .stdout
            .contains("not linted: d4 (a prebuilt component"),
        "{human:?}"
    );
    assert!(
        human.stdout.contains("ok: 2 revision(s) linted"),
        "{human:?}"
    );
    // --dialect postgres applies squawk's rules to a project whose default is SQLite.
    let run = project
        .run_plain(&["lint", "b2", "--dialect", "postgres", "--json"])
        .fails_with(LINT_FINDINGS);
    assert!(
        findings(&run).contains(&"b2 require-concurrent-index-creation 2".to_owned()),
        "{run:?}"
    );
}

#[tokio::test]
async fn a_dry_run_lints_what_components_did_and_changes_nothing_on_both_backends() {
    use crate::support::{BOTH, Backend};
    for backend in BOTH {
        // b1: the batches guest as a batched revision (its first batch creates a table);
        // s2: the scenario guest, which writes a row and, in mode `ok`, reports no progress.
        let (project, db, _) = crate::batches::setup(backend, "batched", 100, 10).await;
        db.exec("CREATE TABLE e2e_mode (mode text); INSERT INTO e2e_mode VALUES ('ok');")
            .await;
        project.wasm_revision("s2", Path::new(crate::test_guest::SCENARIO));
        // Each batch of b1 pauses 50 ms: over max_step_secs = 0.02, whatever the machine.
        db.exec("UPDATE e2e_batches SET pause_ms = 50;").await;
        std::fs::write(
            project.dir.join("wasmig.toml"),
            "[lint]\nmax_step_secs = 0.02\n",
        )
        .unwrap();
        let run = project
            .run(&db, &["lint", "--dry-run", "--json"])
            .fails_with(LINT_FINDINGS);
        let found = findings(&run);
        assert!(
            found
                .iter()
                .any(|f| f.starts_with("b1 ddl-in-batched-revision ")),
            "{backend:?}: {found:?}"
        );
        assert!(
            found.contains(&"s2 no-progress-report 1".to_owned()),
            "{found:?}"
        );
        assert!(
            found.contains(&"b1 slow-dry-run-step 1".to_owned()),
            "{found:?}"
        );
        assert_eq!(run.json()["not_linted"], serde_json::json!([]), "{run:?}");
        if backend == Backend::Postgres {
            // squawk on the statements the component sent: `x integer`.
            assert!(
                found.contains(&"s2 prefer-bigint-over-int 1".to_owned()),
                "{found:?}"
            );
        }
        // Nothing happened to the database.
        assert_eq!(crate::batches::items_at(&db, 0).await, 100, "{backend:?}");
        assert!(!db.table_exists("scenario_marker").await, "{backend:?}");
        assert!(db.heads().await.is_empty(), "{backend:?}");
        // A component that reports its progress passes that rule.
        db.exec("UPDATE e2e_mode SET mode = 'log';").await;
        let run = project
            .run(&db, &["lint", "--dry-run", "--json"])
            .fails_with(LINT_FINDINGS);
        assert!(
            !findings(&run)
                .iter()
                .any(|f| f.contains("no-progress-report")),
            "{run:?}"
        );
        // Without --dry-run, components are listed as not linted.
        let run = project.run(&db, &["lint", "--json"]).success();
        assert_eq!(
            run.json()["not_linted"].as_array().unwrap().len(),
            2,
            "{run:?}"
        );
        db.drop_db().await;
    }
}

/// On MySQL a script holding DDL runs statement by statement (the server commits DDL
/// implicitly), so lint says so when it has several statements; a script of data statements
/// runs in one transaction and is not flagged, and PostgreSQL flags neither.
#[test]
fn on_mysql_a_script_of_ddl_and_more_is_not_atomic() {
    let project = TestProject::new();
    let a1 = project.sql_revision(
        "a1",
        "CREATE TABLE t (id BIGINT PRIMARY KEY, name VARCHAR(50));\nINSERT INTO t VALUES (1, 'a');\n",
        "DROP TABLE t;\n",
    );
    project.sql_revision(
        "b2",
        "INSERT INTO t VALUES (2, 'b');\nUPDATE t SET name = 'c' WHERE id = 1;\n",
        "DELETE FROM t WHERE id = 2;\n",
    );
    let mysql = |args: &[&str]| {
        let mut all = vec!["lint", "--database-url", "mysql://root@127.0.0.1:1/nowhere"];
        all.extend_from_slice(args);
        project.run_plain(&all)
    };
    let run = mysql(&["--json"]).fails_with(LINT_FINDINGS);
    assert_eq!(run.json()["dialect"], "mysql", "{run:?}");
    assert_eq!(findings(&run), ["a1 non-atomic-revision 2"], "{run:?}");
    let human = mysql(&[]).fails_with(LINT_FINDINGS);
    assert!(
        human
            .stdout
            .contains("which MySQL and MariaDB commit implicitly"),
        "{human:?}"
    );
    // PostgreSQL runs both in one transaction: nothing wasmig would call non-atomic.
    let pg = lint_pg(&project, &["--json"]);
    assert!(
        !findings(&pg).iter().any(|f| f.contains("non-atomic")),
        "{pg:?}"
    );

    // Ignored for MySQL with a reason, the ignore stands on PostgreSQL, where the rule does
    // not judge a script run in one transaction.
    project.set_manifest(
        &a1,
        "[[lint.ignore]]\nrule = \"non-atomic-revision\"\nreason = \"the seed row is recreated by hand if it fails\"",
    );
    let run = mysql(&["--json"]).success();
    assert_eq!(
        run.json()["ignored"][0]["rule"],
        "non-atomic-revision",
        "{run:?}"
    );
    let pg = lint_pg(&project, &["--json"]);
    assert!(
        !findings(&pg)
            .iter()
            .any(|f| f.contains("unused-lint-ignore")),
        "{pg:?}"
    );
}

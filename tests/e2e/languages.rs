//! Migrations in Python, JavaScript, C and Go, built from source by `wasmig build` with each
//! language's toolchain (componentize-py, jco, clang, go) and run on both backends: the example
//! backfill gives the Rust example's result in every language; the SDK tours (two batches,
//! copy-in, a recovered SQL error) leave identical tables; an SQL error that escapes a
//! migration fails the step with the language's error; a missing toolchain fails the build
//! (exit 9) saying how to install it; scaffolded revisions build and run; unchanged revisions
//! are not rebuilt; toolchains' extra exports are accepted.
//!
//! Builds are slow (componentize-py takes 20-60 s, and the host's first compile of its 18 MB
//! component tens of seconds), so each (language, example) is built once per test process in
//! a template project ([`built`]) that every test copies: the copy is up to date (the build
//! fingerprint does not depend on where the project lives), and all runs share one compile
//! cache (`WASMIG_CACHE_DIR`, in [`work_dir`]), so only the first run of a
//! component compiles it. The figures each test prints (`build_secs`, `load_ms`) are the
//! README's measurements.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use crate::components::{SUCCEED, component_wat};
use crate::snap::{assert_run, shown, shown_log};
use crate::support::{
    BOTH, Backend, Run, TestDb, TestProject, guests_target_dir, repo_root, wasmig_cmd,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Language {
    Python,
    Js,
    C,
    Go,
}

const LANGUAGES: [Language; 4] = [Language::Python, Language::Js, Language::C, Language::Go];

impl Language {
    /// The `--kind` value, also the directory under `tests/languages/`.
    fn kind(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::Js => "js",
            Language::C => "c",
            Language::Go => "go",
        }
    }

    fn source(self) -> &'static str {
        match self {
            Language::Python => "migration.py",
            Language::Js => "migration.js",
            Language::C => "migration.c",
            Language::Go => "migration.go",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The examples under `tests/languages/<kind>/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Example {
    Backfill,
    SdkTour,
    /// What `wasmig revision --kind <kind>` writes, unedited.
    Template,
    /// Go only: the keyset walker over 100,000 rows.
    Keyset,
    /// Go only: the hostile guest (probes, memory, sleep, panic; see its source).
    Hostile,
}

impl Example {
    fn dir(self) -> Option<&'static str> {
        match self {
            Example::Backfill => Some("backfill"),
            Example::SdkTour => Some("sdk_tour"),
            Example::Template => None,
            Example::Keyset => Some("keyset"),
            Example::Hostile => Some("hostile"),
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A built template project: the `customers` SQL revision `a1` (`tests/languages/customers`) and
/// the example as revision `b2`, with `.wasmig/build/b2.wasm` built.
struct Built {
    dir: PathBuf,
    build_secs: f64,
}

/// This process's directory for the template projects and the shared compile cache, under
/// the guests' target directory. Those of test processes that have ended are removed the
/// first time (each run builds new Python and JavaScript components, so they only grow).
fn work_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let parent = guests_target_dir().join("languages");
        if let Ok(entries) = std::fs::read_dir(&parent) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let alive = name
                    .parse::<u32>()
                    .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
                if !alive {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let dir = parent.join(std::process::id().to_string());
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

/// Creates a project with `wasmig init` in a fresh directory under `parent`.
fn init_project(parent: &Path, name: &str) -> PathBuf {
    let dir = parent.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Run::from_output(wasmig_cmd(&dir).args(["init", "."]).output().unwrap()).success();
    dir
}

/// `wasmig revision ARGS --json` in `dir`; the new revision's directory.
fn new_revision(dir: &Path, args: &[&str]) -> PathBuf {
    let run = Run::from_output(
        wasmig_cmd(dir)
            .arg("revision")
            .args(args)
            .arg("--json")
            .output()
            .unwrap(),
    )
    .success();
    PathBuf::from(run.json()["directory"].as_str().unwrap())
}

/// The template project of (`language`, `example`), built once per test process.
fn built(language: Language, example: Example) -> &'static Built {
    static CELLS: [[OnceLock<Built>; 5]; 4] = [const { [const { OnceLock::new() }; 5] }; 4];
    CELLS[language.index()][example.index()].get_or_init(|| {
        let name = format!("{}-{:?}", language.kind(), example).to_lowercase();
        let dir = init_project(work_dir(), &name);
        let customers = new_revision(&dir, &["-m", "create customers", "--rev-id", "a1"]);
        let customers_sql = repo_root().join("tests/languages/customers");
        for file in ["up.sql", "down.sql"] {
            std::fs::copy(customers_sql.join(file), customers.join(file)).unwrap();
        }
        let revision = new_revision(
            &dir,
            &["-m", &name, "--kind", language.kind(), "--rev-id", "b2"],
        );
        if let Some(sub) = example.dir() {
            let source = repo_root()
                .join("tests/languages")
                .join(language.kind())
                .join(sub);
            for entry in std::fs::read_dir(source).unwrap() {
                let path = entry.unwrap().path();
                std::fs::copy(&path, revision.join(path.file_name().unwrap())).unwrap();
            }
        }
        let started = Instant::now();
        let run = Run::from_output(wasmig_cmd(&dir).arg("build").output().unwrap()).success();
        let build_secs = started.elapsed().as_secs_f64();
        // No snapshot: the toolchains' own output is part of it.
        assert!(
            run.stderr.contains("building revision b2"),
            "{language:?} {example:?}: {run:?}"
        );
        let bytes = std::fs::read(dir.join(".wasmig/build/b2.wasm")).unwrap();
        eprintln!(
            "measure: {} {example:?} build_secs={build_secs:.1} component_bytes={}",
            language.kind(),
            bytes.len()
        );
        Built { dir, build_secs }
    })
}

/// A copy of a built template project, as a project of this test (removed when it ends).
fn project_from(built: &Built) -> TestProject {
    let project = TestProject::new();
    std::fs::remove_dir_all(&project.dir).unwrap();
    copy_dir(&built.dir, &project.dir);
    project
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// The compile cache all language tests share, so a component compiles once per run.
fn shared_cache() -> PathBuf {
    work_dir().join("compile-cache")
}

/// `wasmig ARGS --database-url URL` with the shared compile cache.
fn run_cached(project: &TestProject, db: &TestDb, args: &[&str]) -> Run {
    Run::from_output(
        wasmig_cmd(&project.dir)
            .args(args)
            .args(["--database-url", &db.url])
            .env("WASMIG_CACHE_DIR", shared_cache())
            .output()
            .unwrap(),
    )
}

/// `up --json`, printing how long loading the component took (compile or cache hit).
fn up_measured(project: &TestProject, db: &TestDb, language: Language, what: &str) -> Run {
    let run = run_cached(project, db, &["up", "--json"]).success();
    assert!(
        !run.stderr.contains("building revision"),
        "{language:?}: a copy of a built project was rebuilt:\n{}",
        run.stderr
    );
    let steps = run.json()["steps"].as_array().unwrap().clone();
    let step = steps.iter().find(|s| s["revision"] == "b2").unwrap();
    eprintln!(
        "measure: {} {what} {:?} cache={} load_ms={}",
        language.kind(),
        db.backend,
        step["cache"],
        step["load_ms"]
    );
    run
}

/// The imports and exports of a component, by name.
fn component_names(bytes: &[u8]) -> (Vec<String>, Vec<String>) {
    let wit_component::DecodedWasm::Component(resolve, world) =
        wit_component::decode(bytes).expect("a component")
    else {
        panic!("not a component");
    };
    let world = &resolve.worlds[world];
    let imports = world
        .imports
        .keys()
        .map(|k| resolve.name_world_key(k))
        .collect();
    let exports = world
        .exports
        .keys()
        .map(|k| resolve.name_world_key(k))
        .collect();
    (imports, exports)
}

/// `SELECT id, email_norm`, as text, in id order.
async fn email_norms(db: &TestDb) -> Vec<String> {
    db.strings("SELECT CAST(id AS TEXT) || ' ' || email_norm FROM customers ORDER BY id")
        .await
}

/// What the Rust example computes: `email.trim().to_lowercase()` of every row.
async fn expected_norms(db: &TestDb) -> Vec<String> {
    db.strings("SELECT CAST(id AS TEXT) || ' ' || email FROM customers ORDER BY id")
        .await
        .into_iter()
        .map(|line| {
            let (id, email) = line.split_once(' ').unwrap();
            format!("{id} {}", email.trim().to_lowercase())
        })
        .collect()
}

async fn has_email_norm(db: &TestDb) -> bool {
    let sql = match db.backend {
        Backend::Postgres => {
            "SELECT count(*)::text FROM information_schema.columns WHERE table_name = 'customers' AND column_name = 'email_norm'"
        }
        Backend::Mysql => unreachable!("on MySQL: mysql.rs, and the suites over ALL"),
        Backend::Sqlite => {
            "SELECT count(*) FROM pragma_table_info('customers') WHERE name = 'email_norm'"
        }
    };
    db.count(sql).await > 0
}

/// The example backfill of `language`: built from source, applied and reverted on both
/// backends, giving exactly the Rust example's `email_norm` on each.
async fn backfill_matches_the_rust_example_on_both_backends(language: Language) {
    let built = built(language, Example::Backfill);
    let bytes = std::fs::read(built.dir.join(".wasmig/build/b2.wasm")).unwrap();
    let (imports, exports) = component_names(&bytes);
    // Go's runtime calls WASI preview1 (clocks, random, stdio), adapted to WASI 0.2, which
    // the sandbox grants deny-all; the others import nothing but wasmig's interfaces.
    assert!(
        imports.iter().all(|i| i.starts_with("wasmig:migration/")
            || (language == Language::Go && i.starts_with("wasi:"))),
        "{language:?}: the component imports more than wasmig's interfaces: {imports:?}"
    );
    for export in ["upgrade", "downgrade"] {
        assert!(exports.iter().any(|e| e == export), "{exports:?}");
    }
    let mut results = Vec::new();
    for backend in BOTH {
        let project = project_from(built);
        let db = TestDb::new(backend, &project).await;
        let run = up_measured(&project, &db, language, "backfill");
        assert_run!(
            format!("{}_backfill", language.kind()),
            backend,
            shown_log(&run, &project, Some(&db))
        );
        let norms = email_norms(&db).await;
        assert_eq!(norms.len(), 5000);
        assert_eq!(norms, expected_norms(&db).await, "{language:?} {backend:?}");
        assert_eq!(db.heads().await, ["b2"]);

        run_cached(&project, &db, &["down"]).success();
        assert!(
            !has_email_norm(&db).await,
            "{language:?} {backend:?}: downgrade kept the column"
        );
        assert_eq!(db.heads().await, ["a1"]);
        results.push(norms);
        db.drop_db().await;
    }
    assert_eq!(results[0], results[1], "{language:?}: the backends differ");
    eprintln!(
        "measure: {} build_secs={:.1}",
        language.kind(),
        built.build_secs
    );
}

#[tokio::test]
async fn the_python_backfill_is_built_from_source_and_matches_the_rust_example_on_both_backends() {
    backfill_matches_the_rust_example_on_both_backends(Language::Python).await;
}

#[tokio::test]
async fn the_javascript_backfill_is_built_from_source_and_matches_the_rust_example_on_both_backends()
 {
    backfill_matches_the_rust_example_on_both_backends(Language::Js).await;
}

#[tokio::test]
async fn the_c_backfill_is_built_from_source_and_matches_the_rust_example_on_both_backends() {
    backfill_matches_the_rust_example_on_both_backends(Language::C).await;
}

#[tokio::test]
async fn the_go_backfill_is_built_from_source_and_matches_the_rust_example_on_both_backends() {
    backfill_matches_the_rust_example_on_both_backends(Language::Go).await;
}

/// The directory of revision `b2` (the one holding the language's source).
fn revision_dir(project: &TestProject, language: Language) -> PathBuf {
    std::fs::read_dir(project.dir.join("versions"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join(language.source()).is_file())
        .unwrap_or_else(|| panic!("{language:?}: no {}", language.source()))
}

/// The table every SDK tour leaves, on a backend whose duplicate-key error code is `code`.
fn tour_table(code: &str) -> Vec<String> {
    vec![
        "1 one NULL".to_owned(),
        "2 two n2".to_owned(),
        "3 three NULL".to_owned(),
        format!("4 caught {code} NULL"),
        format!("5 1=one/-,2=two/n2,3=three/-,4=caught {code}/- NULL"),
    ]
}

async fn tour_rows(db: &TestDb) -> Vec<String> {
    db.strings(
        "SELECT CAST(id AS TEXT) || ' ' || label || ' ' || coalesce(note, 'NULL') FROM tour ORDER BY id",
    )
    .await
}

/// The SDK tour of `language` on both backends: the same table as every other language's;
/// then a downgrade whose SQL error escapes fails with the language's error and rolls back,
/// and the next downgrade succeeds.
async fn sdk_tour_matches_and_an_escaping_sql_error_fails_the_step(language: Language) {
    let built = built(language, Example::SdkTour);
    for backend in BOTH {
        let project = project_from(built);
        let db = TestDb::new(backend, &project).await;
        let run = up_measured(&project, &db, language, "sdk_tour");
        let code = match backend {
            Backend::Postgres => "23505",
            Backend::Mysql => unreachable!("on MySQL: mysql.rs, and the suites over ALL"),
            Backend::Sqlite => "1555",
        };
        assert_run!(
            format!("{}_sdk_tour", language.kind()),
            backend,
            shown_log(&run, &project, Some(&db))
        );
        assert_eq!(
            tour_rows(&db).await,
            tour_table(code),
            "{language:?} {backend:?}"
        );

        db.exec("UPDATE tour SET label = 'fail-downgrade' WHERE id = 1")
            .await;
        let failed = run_cached(&project, &db, &["down"]).fails_with(6);
        // The language's own error (`SqlError: ` in Python and JavaScript) and where it was
        // raised, with the SQL error inside.
        assert_run!(
            format!("{}_sdk_tour_escaping_sql_error", language.kind()),
            backend,
            shown(&failed, &project, Some(&db))
        );
        assert!(
            !failed.stderr.contains("trapped"),
            "{language:?}: an SQL error must not trap:\n{}",
            failed.stderr
        );
        assert_eq!(
            db.heads().await,
            ["b2"],
            "the failed downgrade was rolled back"
        );
        assert_eq!(db.count("SELECT count(*) FROM tour").await, 5);

        // A lone surrogate in a parameter (Python and JavaScript strings can hold one; C and
        // Go pass bytes, which the host checks: `guests.rs`) is the SDK's error, raised
        // where the migration passed it, not a trap.
        if let Some(at) = match language {
            Language::Python => Some("(at migration.py:"),
            Language::Js => Some("(at /migration.js:"),
            Language::C | Language::Go => None,
        } {
            db.exec("UPDATE tour SET label = 'fail-lone' WHERE id = 1")
                .await;
            let failed = run_cached(&project, &db, &["down"]).fails_with(6);
            assert!(
                failed
                    .stderr
                    .contains("a text parameter is not valid Unicode: a lone surrogate")
                    && failed.stderr.contains(at)
                    && !failed.stderr.contains("trapped"),
                "{language:?} {backend:?}:\n{}",
                failed.stderr
            );
            assert_eq!(db.heads().await, ["b2"], "{language:?} {backend:?}");
        }
        // A Go or C error whose text is not UTF-8 fails the step with the text repaired,
        // not a trap (the log line with such bytes in the upgrade was repaired too).
        if matches!(language, Language::Go | Language::C) {
            db.exec("UPDATE tour SET label = 'fail-utf8' WHERE id = 1")
                .await;
            let failed = run_cached(&project, &db, &["down"]).fails_with(6);
            assert!(
                failed
                    .stderr
                    .contains("an error with a stray \u{FFFD} byte")
                    && !failed.stderr.contains("trapped")
                    && !failed.stderr.contains("not UTF-8"),
                "{language:?} {backend:?}:\n{}",
                failed.stderr
            );
            assert_eq!(db.heads().await, ["b2"], "{language:?} {backend:?}");
        }
        // An Error whose message cannot be read fails the step with an error naming what
        // was thrown, not a trap; an async downgrade (which returns at its first await,
        // its work undone) fails instead of being recorded.
        if language == Language::Js {
            db.exec("UPDATE tour SET label = 'fail-async' WHERE id = 1")
                .await;
            let failed = run_cached(&project, &db, &["down"]).fails_with(6);
            assert!(
                failed
                    .stderr
                    .contains("downgrade() returned a Promise (an async function?)"),
                "{backend:?}:\n{}",
                failed.stderr
            );
            assert_eq!(db.heads().await, ["b2"], "{backend:?}");
            assert!(db.table_exists("tour").await, "{backend:?}");
            db.exec("UPDATE tour SET label = 'fail-getter' WHERE id = 1")
                .await;
            let failed = run_cached(&project, &db, &["down"]).fails_with(6);
            assert!(
                failed.stderr.contains(
                    "the migration threw [object Error], which could not be turned into text"
                ) && !failed.stderr.contains("trapped"),
                "{backend:?}:\n{}",
                failed.stderr
            );
            assert_eq!(db.heads().await, ["b2"], "{backend:?}");
        }

        db.exec("UPDATE tour SET label = 'one' WHERE id = 1").await;
        run_cached(&project, &db, &["down"]).success();
        assert!(!db.table_exists("tour").await);

        // The same component as a `transaction = "batched"` revision: each batch commits on
        // its own, and the table comes out the same (a manifest change is no rebuild).
        let manifest = revision_dir(&project, language).join("migration.toml");
        let text = std::fs::read_to_string(&manifest).unwrap();
        let batched = text.replace(
            "transaction = \"per-migration\"",
            "transaction = \"batched\"",
        );
        assert_ne!(text, batched, "{text}");
        std::fs::write(&manifest, batched).unwrap();
        let again = run_cached(&project, &db, &["up"]).success();
        assert!(
            !again.stderr.contains("building revision"),
            "{}",
            again.stderr
        );
        assert_eq!(
            tour_rows(&db).await,
            tour_table(code),
            "{language:?} {backend:?} batched"
        );
        run_cached(&project, &db, &["down"]).success();
        db.drop_db().await;
    }
}

#[tokio::test]
async fn the_python_sdk_tour_leaves_the_same_table_and_an_escaping_sql_error_fails_the_step() {
    sdk_tour_matches_and_an_escaping_sql_error_fails_the_step(Language::Python).await;
}

#[tokio::test]
async fn the_javascript_sdk_tour_leaves_the_same_table_and_an_escaping_sql_error_fails_the_step() {
    sdk_tour_matches_and_an_escaping_sql_error_fails_the_step(Language::Js).await;
}

#[tokio::test]
async fn the_c_sdk_tour_leaves_the_same_table_and_an_escaping_sql_error_fails_the_step() {
    sdk_tour_matches_and_an_escaping_sql_error_fails_the_step(Language::C).await;
}

#[tokio::test]
async fn the_go_sdk_tour_leaves_the_same_table_and_an_escaping_sql_error_fails_the_step() {
    sdk_tour_matches_and_an_escaping_sql_error_fails_the_step(Language::Go).await;
}

#[tokio::test]
async fn a_scaffolded_revision_of_every_language_builds_and_runs_as_written() {
    for language in LANGUAGES {
        let built = built(language, Example::Template);
        let source = std::fs::read_dir(built.dir.join("versions"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.join(language.source()).is_file())
            .unwrap_or_else(|| panic!("{language:?}: no {}", language.source()));
        let text = std::fs::read_to_string(source.join(language.source())).unwrap();
        assert!(
            text.contains("upgrade") && text.contains("downgrade"),
            "{text}"
        );
        let project = project_from(built);
        let db = TestDb::new(Backend::Sqlite, &project).await;
        let up = up_measured(&project, &db, language, "template");
        assert_run!(
            format!("{}_template_up", language.kind()),
            shown_log(&up, &project, Some(&db))
        );
        let down = run_cached(&project, &db, &["down"]).success();
        assert_run!(
            format!("{}_template_down", language.kind()),
            shown(&down, &project, Some(&db))
        );
    }
}

#[tokio::test]
async fn a_missing_toolchain_fails_the_build_with_exit_9_and_says_how_to_install_it() {
    // A PATH with none of the toolchains (nor anything else).
    let empty = work_dir().join("empty-path");
    std::fs::create_dir_all(&empty).unwrap();
    for language in LANGUAGES {
        let project = TestProject::new();
        let db = TestDb::new(Backend::Sqlite, &project).await;
        let id = format!("{}1", language.kind());
        project
            .run_plain(&[
                "revision",
                "-m",
                "x",
                "--kind",
                language.kind(),
                "--rev-id",
                &id,
            ])
            .success();
        let without = |args: &[&str]| {
            Run::from_output(
                wasmig_cmd(&project.dir)
                    .args(args)
                    .args(["--database-url", &db.url])
                    .env("PATH", &empty)
                    .env_remove("WASMIG_COMPONENTIZE_PY")
                    .env_remove("WASMIG_JCO")
                    .env_remove("WASMIG_CLANG")
                    .env_remove("WASMIG_GO")
                    .output()
                    .unwrap(),
            )
        };
        // Each names the revision and the toolchain, and says how to install it.
        for args in [&["build"][..], &["up"][..]] {
            let run = without(args).fails_with(9);
            assert_run!(
                format!("{}_toolchain_missing_{}", language.kind(), args[0]),
                shown(&run, &project, Some(&db))
            );
        }
        assert!(db.heads().await.is_empty(), "{language:?}: something ran");
    }
}

#[tokio::test]
async fn an_unchanged_revision_is_not_rebuilt_and_an_edited_one_is() {
    let built = built(Language::C, Example::Backfill);
    let project = project_from(built);
    let build =
        || Run::from_output(wasmig_cmd(&project.dir).arg("build").output().unwrap()).success();
    let component = project.dir.join(".wasmig/build/b2.wasm");
    let before = std::fs::read(&component).unwrap();

    let again = build();
    assert!(
        !again.stderr.contains("building revision"),
        "{}",
        again.stderr
    );
    assert_run!("c_build_up_to_date", shown(&again, &project, None));

    // A manifest change is not a source change.
    let revision = std::fs::read_dir(project.dir.join("versions"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("migration.c").is_file())
        .unwrap();
    project.set_manifest(&revision, "timeout_secs = 30");
    assert!(!build().stderr.contains("building revision"));

    // C builds are reproducible: rebuilding from scratch gives the same bytes.
    std::fs::remove_file(project.dir.join(".wasmig/build/b2.inputs")).unwrap();
    let rebuilt = build();
    assert_run!(
        "c_rebuilt_to_the_same_bytes",
        shown(&rebuilt, &project, None)
    );
    assert_eq!(std::fs::read(&component).unwrap(), before);

    // An edited source is rebuilt.
    let source = revision.join("migration.c");
    let text = std::fs::read_to_string(&source).unwrap();
    std::fs::write(
        &source,
        text.replace("#define CHUNK 1000", "#define CHUNK 500"),
    )
    .unwrap();
    let edited = build();
    assert_run!("c_rebuilt_after_an_edit", shown(&edited, &project, None));
    assert_ne!(std::fs::read(&component).unwrap(), before);
}

#[tokio::test]
async fn builds_from_one_checkout_take_turns_and_both_succeed() {
    use std::io::BufRead as _;
    let built = built(Language::C, Example::Backfill);
    let project = project_from(built);
    let component = project.dir.join(".wasmig/build/b2.wasm");
    let before = std::fs::read(&component).unwrap();
    let stale = || std::fs::remove_file(project.dir.join(".wasmig/build/b2.inputs")).unwrap();
    let spawn = || {
        wasmig_cmd(&project.dir)
            .arg("build")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };

    // Another wasmig holds the project's build lock: a build waits for it, and says so.
    stale();
    let held = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(project.dir.join(".wasmig/build.lock"))
        .unwrap();
    held.lock().unwrap();
    let mut waiting = spawn();
    let mut stderr = std::io::BufReader::new(waiting.stderr.take().unwrap());
    // Read line by line while the lock is held: no snapshot of this run or the next two,
    // whose lines depend on which build takes the lock first.
    let mut seen = String::new();
    while !seen.contains("waiting for another wasmig building in this project") {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "the build ended without waiting: {seen}"
        );
        assert!(
            !line.contains("building revision"),
            "built under the lock: {seen}{line}"
        );
        seen.push_str(&line);
    }
    held.unlock().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(waiting.wait().unwrap().success(), "{seen}{rest}");
    assert!(rest.contains("building revision b2"), "{rest}");

    // Two at once: one builds, the other waits and then finds it up to date.
    stale();
    let (first, second) = (spawn(), spawn());
    let outputs = [
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    ];
    let mut builds = 0;
    for output in &outputs {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        builds += usize::from(stderr.contains("building revision b2"));
    }
    assert_eq!(
        builds, 1,
        "exactly one of the two builds the stale revision"
    );
    assert_eq!(std::fs::read(&component).unwrap(), before);
}

#[tokio::test]
async fn components_with_extra_exports_such_as_a_toolchains_init_are_accepted() {
    // What componentize-qjs and componentize-py add: an `init` function beside the world's.
    let wat = component_wat(SUCCEED).replace(
        "  (export \"upgrade\" (func $up))",
        "  (func $init (result (result (error string)))\n    (canon lift (core func $i \"downgrade\") (memory (core memory $i \"mem\")) (realloc (core func $i \"realloc\"))))\n  (export \"init\" (func $init))\n  (export \"upgrade\" (func $up))",
    );
    let bytes = wat::parse_str(&wat).expect("valid WAT");
    let (_, exports) = component_names(&bytes);
    assert!(exports.iter().any(|e| e == "init"), "{exports:?}");
    for backend in BOTH {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        project.wasm_revision_bytes("b2", &bytes);
        project.run(&db, &["up"]).success();
        assert_eq!(db.heads().await, ["b2"]);
        db.drop_db().await;
    }
    // And the real ones: the Python and JavaScript components carry their toolchain's exports.
    for (language, extra) in [(Language::Python, "exports"), (Language::Js, "init")] {
        let built = built(language, Example::Backfill);
        let bytes = std::fs::read(built.dir.join(".wasmig/build/b2.wasm")).unwrap();
        let (_, exports) = component_names(&bytes);
        assert!(
            exports.iter().any(|e| e == extra),
            "{language:?}: {exports:?}"
        );
    }
}

#[tokio::test]
async fn up_builds_a_stale_revision_of_another_language_before_running_it() {
    let project = project_from(built(Language::C, Example::Backfill));
    std::fs::remove_dir_all(project.dir.join(".wasmig/build")).unwrap();
    let db = TestDb::new(Backend::Sqlite, &project).await;
    let run = run_cached(&project, &db, &["up"]).success();
    assert_run!("c_built_by_up", shown(&run, &project, Some(&db)));
    assert_eq!(db.heads().await, ["b2"]);
    // `--no-build` runs what is there and builds nothing, even when the source changed.
    let down = run_cached(&project, &db, &["down", "--no-build"]).success();
    assert!(
        !down.stderr.contains("building revision"),
        "{}",
        down.stderr
    );
}

#[tokio::test]
async fn a_fresh_checkout_runs_the_component_an_applied_revision_ran_instead_of_a_rebuild() {
    // JavaScript builds differ byte for byte every time, like Python's.
    let built = built(Language::Js, Example::Backfill);
    let project = project_from(built);
    let db = TestDb::new(Backend::Postgres, &project).await;
    run_cached(&project, &db, &["up"]).success();
    let component = project.dir.join(".wasmig/build/b2.wasm");
    let ran = std::fs::read(&component).unwrap();

    // Another machine: the same sources, nothing built.
    std::fs::remove_dir_all(project.dir.join(".wasmig/build")).unwrap();
    let check = run_cached(&project, &db, &["check"]).success();
    assert_run!(
        "js_check_uses_the_stored_component",
        shown(&check, &project, Some(&db))
    );
    assert_eq!(std::fs::read(&component).unwrap(), ran);
    // Nothing is rebuilt, and the downgrade that runs is the one stored with what ran.
    let down = run_cached(&project, &db, &["down", "base"]).success();
    assert!(!down.stderr.contains("building revision"), "{down:?}");
    assert!(db.heads().await.is_empty());

    // Edited sources are a change: rebuilt, then refused as modified once applied.
    run_cached(&project, &db, &["up"]).success();
    let ran = std::fs::read(&component).unwrap();
    std::fs::remove_dir_all(project.dir.join(".wasmig/build")).unwrap();
    let source = revision_dir(&project, Language::Js).join("migration.js");
    let text = std::fs::read_to_string(&source).unwrap();
    std::fs::write(&source, format!("{text}\n// edited\n")).unwrap();
    let run = run_cached(&project, &db, &["down", "base"]).fails_with(12);
    assert_run!("js_edited_source_refused", shown(&run, &project, Some(&db)));
    assert_ne!(std::fs::read(&component).unwrap(), ran);
    db.drop_db().await;
}

/// A fleet on another machine (nothing built): every target runs the JavaScript component
/// it applied, from its stored copy, rather than a rebuild whose bytes would differ and be
/// refused as modified; the new revision after it applies everywhere.
#[tokio::test]
async fn a_fleet_on_a_fresh_checkout_runs_the_components_its_targets_applied() {
    let built = built(Language::Js, Example::Backfill);
    let project = project_from(built);
    let dbs = [
        TestDb::new(Backend::Postgres, &project).await,
        TestDb::new(Backend::Postgres, &project).await,
        TestDb::new(Backend::Postgres, &project).await,
    ];
    let list: String = dbs.iter().map(|db| format!("{}\n", db.url)).collect();
    let targets = project.dir.join("targets.txt");
    std::fs::write(&targets, list).unwrap();
    let fleet = |args: &[&str]| {
        Run::from_output(
            wasmig_cmd(&project.dir)
                .args(args)
                .args(["--targets", targets.to_str().unwrap(), "--jobs", "3"])
                .env("WASMIG_CACHE_DIR", shared_cache())
                .output()
                .unwrap(),
        )
    };
    fleet(&["up"]).success();
    let ran = std::fs::read(project.dir.join(".wasmig/build/b2.wasm")).unwrap();
    std::fs::remove_dir_all(project.dir.join(".wasmig/build")).unwrap();
    let next = new_revision(&project.dir, &["-m", "after", "--rev-id", "c3"]);
    std::fs::write(next.join("up.sql"), "CREATE TABLE after_js (x int);").unwrap();
    std::fs::write(next.join("down.sql"), "DROP TABLE after_js;").unwrap();
    let run = fleet(&["up"]).success();
    assert!(!run.stderr.contains("building revision b2"), "{run:?}");
    assert_eq!(
        std::fs::read(project.dir.join(".wasmig/build/b2.wasm")).unwrap(),
        ran,
        "the stored component, not a rebuild"
    );
    for db in dbs {
        assert_eq!(db.heads().await, ["c3"]);
        db.drop_db().await;
    }
}

/// Untrusted mode builds each language's revision again from its source (never the
/// template's build outputs), with the toolchain jailed: no network, an empty environment,
/// reads of its installation and the sources only. A Python and a JavaScript migration's
/// top-level code, run by the toolchain to snapshot it, reaches for a secret file outside
/// the checkout and a secret variable of wasmig's environment, writes outside, connects to
/// a listener and spawns a shell: no secret is in any output or in the component the
/// database stored, nothing is written, nothing connects.
#[tokio::test]
async fn every_language_builds_jailed_and_runs_in_untrusted_mode() {
    let secret_dir = work_dir().join(format!("secret-{}", std::process::id()));
    std::fs::create_dir_all(&secret_dir).unwrap();
    let secret = format!("SECRET-{}", uuid::Uuid::new_v4().simple());
    let secret_file = secret_dir.join("credentials");
    std::fs::write(&secret_file, &secret).unwrap();
    let marker = secret_dir.join("written-by-the-build");
    let var = "WASMIG_TEST_LANGUAGE_SECRET".to_owned();
    let value = format!("SECRET-VAR-{}", uuid::Uuid::new_v4().simple());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    for language in LANGUAGES {
        let project = project_from(built(language, Example::Backfill));
        let source = project.dir.join("versions").join(
            std::fs::read_dir(project.dir.join("versions"))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .find(|n| n.to_string_lossy().contains("b2"))
                .unwrap(),
        );
        let path = source.join(language.source());
        let mut text = std::fs::read_to_string(&path).unwrap();
        let file = secret_file.display().to_string();
        let marker = marker.display().to_string();
        // Top-level code, run by the toolchain to snapshot the module at build time.
        match language {
            Language::Python => text.push_str(&format!(
                "\nLEAKS = []\nfor attempt in (\n    lambda: open({file:?}).read(),\n    lambda: __import__('os').environ.get({var:?}),\n    lambda: open({marker:?}, 'w').write('x'),\n    lambda: __import__('socket').create_connection(('127.0.0.1', {port})),\n    lambda: __import__('subprocess').run(['sh', '-c', 'cat {file} > {marker}']),\n):\n    try:\n        LEAKS.append(str(attempt()))\n    except BaseException as e:\n        LEAKS.append(str(e))\n"
            )),
            Language::Js => text.push_str(&format!(
                "\nexport const LEAKS = [];\nfor (const attempt of [\n  () => globalThis.process?.env?.[{var:?}],\n  () => globalThis.std?.loadFile({file:?}),\n  () => globalThis.os?.exec?.(['sh', '-c', 'cat {file} > {marker}']),\n]) {{ try {{ LEAKS.push(String(attempt())); }} catch (e) {{ LEAKS.push(String(e)); }} }}\n"
            )),
            // C and Go run nothing at build time; their compilers are jailed like the others.
            Language::C | Language::Go => {}
        }
        std::fs::write(path, text).unwrap();
        let db = TestDb::new(Backend::Postgres, &project).await;
        let run = Run::from_output(
            wasmig_cmd(&project.dir)
                .env(&var, &value)
                .env("WASMIG_CACHE_DIR", shared_cache())
                .args(["up", "--untrusted", "--database-url", &db.url])
                .output()
                .unwrap(),
        )
        .success();
        assert!(
            run.stderr.contains("building revision b2"),
            "{language:?}: untrusted mode must build from source:\n{}",
            run.stderr
        );
        for leaked in [&secret, &value] {
            assert!(
                !run.stderr.contains(leaked.as_str()),
                "{language:?}: {}",
                run.stderr
            );
        }
        assert!(
            !std::path::Path::new(&marker).exists(),
            "{language:?}: a file was written outside"
        );
        assert!(
            listener.accept().is_err(),
            "{language:?}: a connection reached the listener"
        );
        assert_eq!(
            email_norms(&db).await,
            expected_norms(&db).await,
            "{language:?}"
        );
        assert_eq!(db.heads().await, ["b2"]);
        let stored = db
            .count(&format!(
                "select count(*) from wasmig_artifact where position('{secret}'::bytea in component) > 0 or position('{value}'::bytea in component) > 0"
            ))
            .await;
        assert_eq!(stored, 0, "{language:?}: the secret is in the component");
        db.drop_db().await;
    }
    std::fs::remove_dir_all(&secret_dir).unwrap();
}

/// `items`: 100,000 rows `(id, 'item-<id>')`, for the keyset walk.
async fn seed_items(db: &TestDb) {
    let fill = match db.backend {
        Backend::Postgres => {
            "INSERT INTO items SELECT g, 'item-' || g FROM generate_series(1, 100000) g"
        }
        Backend::Mysql => unreachable!("on MySQL: mysql.rs, and the suites over ALL"),
        Backend::Sqlite => {
            "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 100000)
             INSERT INTO items SELECT i, 'item-' || i FROM c"
        }
    };
    db.exec(&format!(
        "CREATE TABLE items (id BIGINT PRIMARY KEY, name TEXT NOT NULL); {fill};"
    ))
    .await;
}

/// The Go keyset walker backfills 100,000 rows, 10,000 per batch, on both backends: in the
/// step's one transaction, and as a `transaction = "batched"` revision where each batch
/// commits on its own; the downgrade drops the column.
#[tokio::test]
async fn a_go_keyset_walk_backfills_100000_rows_in_batches_on_both_backends() {
    let built = built(Language::Go, Example::Keyset);
    for backend in BOTH {
        for batched in [false, true] {
            let project = project_from(built);
            let db = TestDb::new(backend, &project).await;
            seed_items(&db).await;
            if batched {
                let manifest = revision_dir(&project, Language::Go).join("migration.toml");
                let text = std::fs::read_to_string(&manifest).unwrap();
                std::fs::write(
                    &manifest,
                    text.replace(
                        "transaction = \"per-migration\"",
                        "transaction = \"batched\"",
                    ),
                )
                .unwrap();
            }
            let started = Instant::now();
            up_measured(&project, &db, Language::Go, "keyset");
            eprintln!(
                "measure: go keyset {backend:?} batched={batched} up_secs={:.1}",
                started.elapsed().as_secs_f64()
            );
            assert_eq!(
                db.count("SELECT count(*) FROM items WHERE name_norm = upper(name)")
                    .await,
                100_000,
                "{backend:?} batched={batched}"
            );
            assert_eq!(db.heads().await, ["b2"]);
            run_cached(&project, &db, &["down"]).success();
            assert_eq!(db.heads().await, ["a1"]);
            let column = match backend {
                Backend::Postgres => {
                    "SELECT count(*) FROM information_schema.columns WHERE table_name = 'items' AND column_name = 'name_norm'"
                }
                Backend::Mysql => unreachable!("on MySQL: mysql.rs, and the suites over ALL"),
                Backend::Sqlite => {
                    "SELECT count(*) FROM pragma_table_info('items') WHERE name = 'name_norm'"
                }
            };
            assert_eq!(db.count(column).await, 0, "{backend:?}: the column stayed");
            db.drop_db().await;
        }
    }
}

/// A copy of the hostile Go guest's project with `go_mode` set to `mode` (and the ports of
/// the probes' listeners, 0 when there are none).
async fn hostile_go_with(backend: Backend, mode: &str, ports: (u16, u16)) -> (TestProject, TestDb) {
    let project = project_from(built(Language::Go, Example::Hostile));
    let db = TestDb::new(backend, &project).await;
    db.exec(&format!(
        "CREATE TABLE go_mode (mode TEXT, tcp_port INTEGER, udp_port INTEGER);
         INSERT INTO go_mode VALUES ('{mode}', {}, {});",
        ports.0, ports.1
    ))
    .await;
    (project, db)
}

async fn hostile_go(backend: Backend, mode: &str) -> (TestProject, TestDb) {
    hostile_go_with(backend, mode, (0, 0)).await
}

/// The hostile Go guest's probes: files, directories, writes, environment, TCP, UDP and
/// name lookups are all denied (each says so in the log), and the clocks are real.
#[tokio::test]
async fn a_go_guest_cannot_read_files_environment_or_reach_the_network_on_both_backends() {
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    tcp.set_nonblocking(true).unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_nonblocking(true).unwrap();
    let ports = (
        tcp.local_addr().unwrap().port(),
        udp.local_addr().unwrap().port(),
    );
    for backend in BOTH {
        let (project, db) = hostile_go_with(backend, "probe", ports).await;
        let run = Run::from_output(
            wasmig_cmd(&project.dir)
                .args(["up", "--database-url", &db.url])
                .env("WASMIG_CACHE_DIR", shared_cache())
                .env("WASMIG_E2E_SECRET", "do-not-leak")
                .output()
                .unwrap(),
        )
        .success();
        let shown = shown(&run, &project, Some(&db))
            .replace(&ports.0.to_string(), "[TCP_PORT]")
            .replace(&ports.1.to_string(), "[UDP_PORT]");
        assert_run!("go_hostile_probes", backend, shown);
        assert!(tcp.accept().is_err(), "{backend:?}: a connection arrived");
        assert!(
            udp.recv(&mut [0; 16]).is_err(),
            "{backend:?}: a datagram arrived"
        );
        assert!(!run.stderr.contains("do-not-leak"));
        assert!(!Path::new("/tmp/go-guest-was-here").exists());
        assert_eq!(db.heads().await, ["b2"]);
        db.drop_db().await;
    }
}

/// A Go guest that allocates without end is stopped by the memory cap (exit 7) and leaves
/// nothing behind.
#[tokio::test]
async fn a_go_guest_allocating_without_end_is_stopped_by_the_memory_cap_on_both_backends() {
    for backend in BOTH {
        let (project, db) = hostile_go(backend, "memory").await;
        project.set_manifest(
            &revision_dir(&project, Language::Go),
            "memory_limit_mib = 64",
        );
        let run = run_cached(&project, &db, &["up"]).fails_with(7);
        assert!(
            run.stderr.contains("memory limit of 64 MiB"),
            "{backend:?}: {}",
            run.stderr
        );
        assert_eq!(db.heads().await, ["a1"], "{backend:?}");
        db.drop_db().await;
    }
}

/// A Go guest asleep (`time.Sleep`, a wait inside the host) is stopped by the deadline
/// (exit 7), and its table is rolled back.
#[tokio::test]
async fn a_go_guest_sleeping_is_stopped_by_the_deadline_on_both_backends() {
    for backend in BOTH {
        let (project, db) = hostile_go(backend, "sleep").await;
        project.set_manifest(&revision_dir(&project, Language::Go), "timeout_secs = 2");
        let started = Instant::now();
        let run = run_cached(&project, &db, &["up"]).fails_with(7);
        assert!(
            started.elapsed().as_secs() < 60,
            "{backend:?}: the sleep was not cut short"
        );
        assert!(
            run.stderr.contains("time limit of 2"),
            "{backend:?}: {}",
            run.stderr
        );
        assert_eq!(db.heads().await, ["a1"], "{backend:?}");
        assert!(!db.table_exists("go_slept").await, "{backend:?}");
        db.drop_db().await;
    }
}

/// A Go panic traps the component: the step fails with Go's panic message in the log, and
/// its work is rolled back.
#[tokio::test]
async fn a_go_panic_fails_the_step_and_rolls_it_back_on_both_backends() {
    for backend in BOTH {
        let (project, db) = hostile_go(backend, "panic").await;
        // A trap is a failed migration (exit 6), as in every language; exit 7 is for limits.
        let run = run_cached(&project, &db, &["up"]).fails_with(6);
        // No snapshot: Go's trace shows addresses that move with every change of the SDK.
        for expected in [
            "[b2] stderr: panic: runtime error: index out of range [5] with length 0",
            "[b2] stderr: \tm_b2@v0.0.0/migration.go:",
            "error: upgrade of revision b2 failed and was rolled back: the migration trapped",
        ] {
            assert!(
                run.stderr.contains(expected),
                "{backend:?}: {expected}\n{}",
                run.stderr
            );
        }
        assert_eq!(db.heads().await, ["a1"], "{backend:?}");
        assert!(!db.table_exists("go_panicked").await, "{backend:?}");
        db.drop_db().await;
    }
}

/// Go builds are reproducible (rebuilt from scratch: the same bytes), a compile error names
/// the revision and the line, a `toolchain` line downloads nothing, and a `require` of a
/// module from the network fails offline (exit 9) instead of downloading it.
#[tokio::test]
async fn go_builds_are_reproducible_offline_and_name_the_revision_in_compile_errors() {
    let project = project_from(built(Language::Go, Example::Backfill));
    let build = || Run::from_output(wasmig_cmd(&project.dir).arg("build").output().unwrap());
    let component = project.dir.join(".wasmig/build/b2.wasm");
    let before = std::fs::read(&component).unwrap();
    std::fs::remove_dir_all(project.dir.join(".wasmig/build")).unwrap();
    build().success();
    assert_eq!(
        std::fs::read(&component).unwrap(),
        before,
        "a rebuild gave other bytes"
    );

    let revision = revision_dir(&project, Language::Go);
    let source = revision.join("migration.go");
    let text = std::fs::read_to_string(&source).unwrap();
    std::fs::write(
        &source,
        text.replace("var done int64", "var done int64 = \"x\""),
    )
    .unwrap();
    // No snapshot: the command line shown names where Go is installed.
    let broken = build().fails_with(9);
    assert!(
        broken
            .stderr
            .contains("error: revision b2 (Go): the build failed"),
        "{}",
        broken.stderr
    );
    assert!(
        broken.stderr.contains(
            "migration.go:39:19: cannot use \"x\" (untyped string constant) as int64 value"
        ),
        "{}",
        broken.stderr
    );
    std::fs::write(&source, &text).unwrap();

    let go_mod = revision.join("go.mod");
    let original = std::fs::read_to_string(&go_mod).unwrap();
    // A newer `go` or `toolchain` line in the revision's module fetches no toolchain (Go
    // reads them from the main module only, which is wasmig's): the local Go builds it.
    std::fs::write(
        &go_mod,
        original.replace("go 1.25", "go 1.25\n\ntoolchain go1.99.0"),
    )
    .unwrap();
    let run = build().success();
    assert!(!run.stderr.contains("go: downloading"), "{}", run.stderr);
    // A module from the network cannot be fetched: exit 9, saying why.
    std::fs::write(
        &go_mod,
        format!("{original}\nrequire example.com/not/fetched v1.2.3\n"),
    )
    .unwrap();
    let fetch = revision.join("fetch.go");
    std::fs::write(
        &fetch,
        "package migration\n\nimport _ \"example.com/not/fetched\"\n",
    )
    .unwrap();
    let run = build().fails_with(9);
    std::fs::remove_file(&fetch).unwrap();
    assert!(run.stderr.contains("revision b2 (Go)"), "{}", run.stderr);
    assert!(run.stderr.contains("GOPROXY=off"), "{}", run.stderr);
    assert!(
        run.stderr.contains("wasmig builds Go offline"),
        "{}",
        run.stderr
    );
    assert!(
        !project
            .dir
            .join(".wasmig/build/go-path/pkg/mod/golang.org")
            .exists(),
        "a toolchain was downloaded"
    );
    std::fs::write(&go_mod, original).unwrap();
    build().success();
    assert_eq!(std::fs::read(&component).unwrap(), before);
}

/// `wasmig revision --kind go` writes `migration.go` and `go.mod`, and the SDK they name,
/// so that `go vet` passes in the revision's directory as written; `wasmig build` writes the
/// SDK again where a clone lacks it.
#[tokio::test]
async fn a_scaffolded_go_revision_passes_go_vet() {
    let project = TestProject::new();
    project
        .run_plain(&["revision", "-m", "vetted", "--kind", "go", "--rev-id", "g1"])
        .success();
    let revision = std::fs::read_dir(project.dir.join("versions"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("migration.go").is_file())
        .unwrap();
    assert!(revision.join("go.mod").is_file());
    let cache = work_dir().join("go-vet-cache");
    let vet = std::process::Command::new("go")
        .args(["vet", "./..."])
        .current_dir(&revision)
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=mod")
        .env("GOWORK", "off")
        .env("GOCACHE", &cache)
        .output()
        .expect("go is installed (.ci/run installs it)");
    assert!(
        vet.status.success(),
        "{}{}",
        String::from_utf8_lossy(&vet.stdout),
        String::from_utf8_lossy(&vet.stderr)
    );
    // A clone has no copy of the SDK (git ignores it): `wasmig build` writes it again.
    std::fs::remove_dir_all(project.dir.join("versions/.wasmig-sdk/go")).unwrap();
    project.run_plain(&["build"]).success();
    assert!(
        project
            .dir
            .join(
                "versions/.wasmig-sdk/go/internal/wit/imports/wasmig_migration_sql/wit_bindings.go"
            )
            .is_file()
    );
}

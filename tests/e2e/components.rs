//! Hostile and broken components written inline in WAT: traps, infinite loops, memory
//! bombs, malformed files, the wrong world, denied imports; a component's DDL; and the
//! compile cache. A guest stopped by a trap or a limit is rolled back on every backend,
//! MySQL included, and a component's DDL is refused on MySQL; the rest (refused files, the
//! compile cache) does not depend on the backend and runs on SQLite.

use std::path::Path;

use crate::snap::{assert_run, shown, shown_log};
use crate::support::{ALL, Backend, Run, TestDb, TestProject, wasmig_cmd};

/// A component exporting `upgrade` and `downgrade` as `func() -> result<_, string>`, whose
/// `upgrade` core function body is `body` (returns a pointer to the result in memory) and
/// whose `downgrade` succeeds.
pub(crate) fn component(body: &str) -> Vec<u8> {
    wat::parse_str(component_wat(body)).expect("valid WAT")
}

/// The WAT text of [`component`].
pub(crate) fn component_wat(body: &str) -> String {
    format!(
        r#"(component
  (core module $m
    (memory (export "mem") 1)
    (table $t 1 funcref)
    (func (export "upgrade") (result i32) {body})
    (func (export "downgrade") (result i32) (i32.const 0))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32) (i32.const 1024))
  )
  (core instance $i (instantiate $m))
  (func $up (result (result (error string)))
    (canon lift (core func $i "upgrade") (memory (core memory $i "mem")) (realloc (core func $i "realloc"))))
  (func $down (result (result (error string)))
    (canon lift (core func $i "downgrade") (memory (core memory $i "mem")) (realloc (core func $i "realloc"))))
  (export "upgrade" (func $up))
  (export "downgrade" (func $down))
)"#
    )
}

/// A component importing `evil:net/raw-socket`, which the sandbox denies (exit 8).
pub(crate) fn denied_import() -> Vec<u8> {
    wat::parse_str(
        r#"(component
  (import "evil:net/raw-socket" (instance))
  (core module $m (memory (export "mem") 1) (func (export "f") (result i32) (i32.const 0)))
  (core instance $i (instantiate $m))
  (func $f (result (result (error string))) (canon lift (core func $i "f") (memory (core memory $i "mem"))))
  (export "upgrade" (func $f))
  (export "downgrade" (func $f)))"#,
    )
    .unwrap()
}

/// A component whose `upgrade` runs `sql` through the WIT's `sql.batch` and, if the host
/// answers with an error, returns that error's code as its own (its `downgrade` does
/// nothing).
fn batch_component(sql: &str) -> Vec<u8> {
    let len = sql.len();
    wat::parse_str(format!(
        r#"(component
  (import "wasmig:migration/sql@0.3.0" (instance $sql
    (type $err (record
      (field "code" string) (field "message" string) (field "detail" (option string))
      (field "hint" (option string)) (field "constraint" (option string))
      (field "table" (option string)) (field "column" (option string))))
    (export "sql-error" (type $e (eq $err)))
    (export "batch" (func (param "script" string) (result (result (error $e)))))))
  (core module $libc
    (memory (export "mem") 1)
    (global $next (mut i32) (i32.const 4096))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $at i32)
      (local.set $at (i32.and
        (i32.add (global.get $next) (i32.sub (local.get 2) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get 2))))
      (global.set $next (i32.add (local.get $at) (local.get 3)))
      (local.get $at)))
  (core instance $libc (instantiate $libc))
  (alias export $sql "batch" (func $batch))
  (core func $batch_lowered (canon lower (func $batch)
    (memory (core memory $libc "mem")) (realloc (core func $libc "realloc"))))
  (core module $m
    (import "libc" "mem" (memory 1))
    (import "sql" "batch" (func $batch (param i32 i32 i32)))
    (data (i32.const 1024) "{sql}")
    (func (export "upgrade") (result i32)
      (call $batch (i32.const 1024) (i32.const {len}) (i32.const 256))
      (if (i32.load8_u (i32.const 256))
        (then
          (i32.store8 (i32.const 512) (i32.const 1))
          (i32.store (i32.const 516) (i32.load (i32.const 260)))
          (i32.store (i32.const 520) (i32.load (i32.const 264)))
          (return (i32.const 512))))
      (i32.store8 (i32.const 512) (i32.const 0))
      (i32.const 512))
    (func (export "downgrade") (result i32)
      (i32.store8 (i32.const 512) (i32.const 0))
      (i32.const 512)))
  (core instance $i (instantiate $m
    (with "libc" (instance $libc))
    (with "sql" (instance (export "batch" (func $batch_lowered))))))
  (func $up (result (result (error string)))
    (canon lift (core func $i "upgrade") (memory (core memory $libc "mem"))
      (realloc (core func $libc "realloc"))))
  (func $down (result (result (error string)))
    (canon lift (core func $i "downgrade") (memory (core memory $libc "mem"))
      (realloc (core func $libc "realloc"))))
  (export "upgrade" (func $up))
  (export "downgrade" (func $down)))"#
    ))
    .expect("valid WAT")
}

const TRAP: &str = "unreachable";
const LOOP: &str = "(loop $l (br $l)) (unreachable)";
/// Grows memory by 16 MiB at a time, forever.
const MEMORY_BOMB: &str = "(loop $l (drop (memory.grow (i32.const 256))) (br $l)) (unreachable)";
/// Grows a table by 100,000 elements at a time, forever (each takes host memory outside the
/// linear-memory cap).
const TABLE_BOMB: &str =
    "(loop $l (drop (table.grow $t (ref.null func) (i32.const 100000))) (br $l)) (unreachable)";
/// Returns the ok result stored at address 0 (zeroed memory: discriminant 0 = ok).
pub(crate) const SUCCEED: &str = "(i32.const 0)";

/// Runs a revision that first creates a table in SQL, then the component: the component's
/// failure must roll back only its own step.
async fn assert_component_fails(
    backend: Backend,
    body: &str,
    extra_manifest: &str,
    code: i32,
    name: &str,
) {
    let project = TestProject::new();
    let db = TestDb::new(backend, &project).await;
    project.sql_revision("a1", "CREATE TABLE kept (x int);", "DROP TABLE kept;");
    let dir = project.wasm_revision_bytes("b2", &component(body));
    project.set_manifest(&dir, extra_manifest);
    let run = project.run(&db, &["up"]).fails_with(code);
    assert_run!(name, backend, shown(&run, &project, Some(&db)));
    assert_eq!(db.heads().await, ["a1"], "{backend:?}");
    assert_eq!(db.history().await, ["upgrade:a1"], "{backend:?}");
    db.drop_db().await;
}

#[tokio::test]
async fn a_trapping_guest_is_rolled_back_and_blamed() {
    for backend in ALL {
        assert_component_fails(backend, TRAP, "", 6, "trap_rolled_back").await;
    }
}

#[tokio::test]
async fn an_infinite_loop_is_stopped_by_the_deadline() {
    for backend in ALL {
        assert_component_fails(
            backend,
            LOOP,
            "timeout_secs = 1",
            7,
            "infinite_loop_stopped",
        )
        .await;
    }
}

#[tokio::test]
async fn a_memory_bomb_is_stopped_by_the_memory_cap() {
    for backend in ALL {
        assert_component_fails(
            backend,
            MEMORY_BOMB,
            "memory_limit_mib = 64",
            7,
            "memory_bomb_stopped",
        )
        .await;
    }
}

#[tokio::test]
async fn a_table_bomb_is_stopped_by_the_table_cap() {
    for backend in ALL {
        assert_component_fails(backend, TABLE_BOMB, "", 7, "table_bomb_stopped").await;
    }
}

/// A component's DDL: on PostgreSQL and SQLite it runs in the step's transaction; MySQL
/// would commit it implicitly, half-way through that transaction, so there the statement is
/// refused before it is sent (`WASMIG-STATE`, answered to the guest), and the step, which
/// fails with it, is rolled back whole.
#[tokio::test]
async fn a_components_ddl_runs_in_its_transaction_and_is_refused_on_mysql() {
    for backend in ALL {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        project.sql_revision("a1", "CREATE TABLE kept (x int);", "DROP TABLE kept;");
        project.wasm_revision_bytes(
            "b2",
            &batch_component("INSERT INTO kept VALUES (1); CREATE TABLE made (x int)"),
        );
        let run = project.run(&db, &["up"]);
        if backend == Backend::Mysql {
            let run = run.fails_with(6);
            assert_run!(
                "component_ddl_refused",
                backend,
                shown(&run, &project, Some(&db))
            );
            assert!(
                run.stderr
                    .contains("the migration returned an error: WASMIG-STATE"),
                "{run:?}"
            );
            assert_eq!(db.heads().await, ["a1"]);
            assert!(!db.table_exists("made").await);
            assert_eq!(
                db.count("SELECT count(*) FROM kept").await,
                0,
                "rolled back"
            );
            assert!(db.failed_marks().await.is_empty());
        } else {
            run.success();
            assert_eq!(db.heads().await, ["b2"], "{backend:?}");
            assert!(db.table_exists("made").await, "{backend:?}");
            assert_eq!(db.count("SELECT count(*) FROM kept").await, 1);
        }
        db.drop_db().await;
    }
}

#[tokio::test]
async fn malformed_files_and_core_modules_are_refused() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Sqlite, &project).await;
    project.wasm_revision_bytes("a1", b"this is not wasm at all");
    let run = project.run(&db, &["up"]).fails_with(8);
    assert_run!("not_a_wasm_file", shown(&run, &project, Some(&db)));
    assert!(db.heads().await.is_empty());

    let project = TestProject::new();
    let core = wat::parse_str("(module (func (export \"upgrade\")))").unwrap();
    project.wasm_revision_bytes("a1", &core);
    let run = project.run(&db, &["up"]).fails_with(8);
    assert_run!("core_module_refused", shown(&run, &project, Some(&db)));

    let project = TestProject::new();
    let mut truncated = component(SUCCEED);
    truncated.truncate(truncated.len() / 2);
    project.wasm_revision_bytes("a1", &truncated);
    let run = project.run(&db, &["up"]).fails_with(8);
    assert_run!("truncated_component", shown(&run, &project, Some(&db)));
}

#[tokio::test]
async fn components_of_another_world_or_with_denied_imports_are_refused() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Sqlite, &project).await;
    let wrong_world = wat::parse_str(
        r#"(component
  (core module $m (func (export "run")))
  (core instance $i (instantiate $m))
  (func $run (canon lift (core func $i "run")))
  (export "run" (func $run)))"#,
    )
    .unwrap();
    project.wasm_revision_bytes("a1", &wrong_world);
    let run = project.run(&db, &["up"]).fails_with(8);
    assert_run!(
        "component_of_another_world",
        shown(&run, &project, Some(&db))
    );

    // The right names with the wrong signature: `upgrade: func()` instead of
    // `func() -> result<_, string>`.
    let project = TestProject::new();
    let wrong_signature = wat::parse_str(
        r#"(component
  (core module $m (func (export "run")))
  (core instance $i (instantiate $m))
  (func $run (canon lift (core func $i "run")))
  (export "upgrade" (func $run))
  (export "downgrade" (func $run)))"#,
    )
    .unwrap();
    project.wasm_revision_bytes("a1", &wrong_signature);
    let run = project.run(&db, &["up"]).fails_with(8);
    assert_run!(
        "component_with_the_wrong_signature",
        shown(&run, &project, Some(&db))
    );
    assert!(db.heads().await.is_empty());

    let project = TestProject::new();
    project.wasm_revision_bytes("a1", &denied_import());
    let run = project.run(&db, &["up"]).fails_with(8);
    assert_run!(
        "component_with_a_denied_import",
        shown(&run, &project, Some(&db))
    );
    assert!(db.heads().await.is_empty());
}

#[tokio::test]
async fn the_second_run_loads_components_from_the_compile_cache() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Sqlite, &project).await;
    project.wasm_revision_bytes("a1", &component(SUCCEED));

    let first = project.run(&db, &["up", "--json"]).success().json();
    assert_eq!(first["steps"][0]["cache"], "miss");
    project.run(&db, &["down"]).success();
    let second = project.run(&db, &["up", "--json"]).success().json();
    assert_eq!(second["steps"][0]["cache"], "hit", "{second}");
    project.run(&db, &["down"]).success();
    let bypass = project
        .run(&db, &["up", "--json", "--no-cache"])
        .success()
        .json();
    assert_eq!(bypass["steps"][0]["cache"], "disabled");

    // Nothing pending: nothing is compiled or instantiated, so even a cache wipe is unseen.
    std::fs::remove_dir_all(project.dir.join(".wasmig/cache")).unwrap();
    let idle = project.run(&db, &["up", "--json"]).success().json();
    assert_eq!(idle["steps"], serde_json::json!([]));
    assert!(
        !project.dir.join(".wasmig/cache").exists(),
        "an idle run touched the cache"
    );
}

/// A run's new components are compiled in the background, in step order, while its first
/// steps run (issue 18): each step still says its component was compiled in this run, and
/// a broken component fails at its own step, naming its revision, after the steps before
/// it committed, as if each step had compiled its own.
#[tokio::test]
async fn new_components_compile_ahead_of_their_steps_and_a_broken_one_fails_at_its_own() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    let distinct = |n: u32| component(&format!("(drop (i32.const {n})) (i32.const 0)"));
    for (id, n) in [("a1", 1), ("a2", 2), ("a3", 3), ("a4", 4)] {
        project.wasm_revision_bytes(id, &distinct(n));
    }
    let labels = |run: &Run| -> Vec<String> {
        let json = run.json();
        json["steps"]
            .as_array()
            .unwrap_or_else(|| panic!("{json}"))
            .iter()
            .map(|s| s["cache"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let cold = project.run(&db, &["up", "--json"]).success();
    assert_eq!(labels(&cold), ["miss"; 4], "{cold:?}");
    assert_eq!(db.heads().await, ["a4"]);
    project.run(&db, &["down", "base"]).success();
    let warm = project.run(&db, &["up", "--json"]).success();
    assert_eq!(labels(&warm), ["hit"; 4], "{warm:?}");
    db.drop_db().await;

    // The second of three is not valid wasm inside (an `i64` returned as an `i32`): the
    // first step commits, the second fails as a component that does not compile (exit 8),
    // the third never runs; a second run fails the same way, at the same step.
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.wasm_revision_bytes("b1", &distinct(1));
    project.wasm_revision_bytes("b2", &component("(i64.const 0)"));
    project.wasm_revision_bytes("b3", &distinct(3));
    for _ in 0..2 {
        let run = project.run(&db, &["up"]).fails_with(8);
        assert!(
            run.stderr.contains("revision b2") && run.stderr.contains("not a valid component"),
            "{run:?}"
        );
        assert_eq!(db.heads().await, ["b1"], "{run:?}");
        assert_eq!(db.history().await.len(), 1, "{run:?}");
    }
    db.drop_db().await;
}

/// Sets `[sandbox] compiler` in the project's `wasmig.toml`.
fn set_compiler(project: &TestProject, compiler: &str) {
    let path = project.dir.join("wasmig.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("[sandbox]\n"), "{text}");
    let text = text.replacen(
        "[sandbox]\n",
        &format!("[sandbox]\ncompiler = \"{compiler}\"\n"),
        1,
    );
    std::fs::write(&path, text).unwrap();
}

/// Winch, wasmtime's baseline compiler, runs a component under the same sandbox as
/// Cranelift: its SQL goes through the host in the step's transaction, and a trap, an
/// infinite loop, a memory bomb and a table bomb are each stopped, blamed and rolled back
/// with the same exit codes.
#[tokio::test]
async fn components_compiled_with_winch_keep_every_limit() {
    for (body, manifest, code) in [
        (TRAP, "", 6),
        (LOOP, "timeout_secs = 1", 7),
        (MEMORY_BOMB, "memory_limit_mib = 64", 7),
        (TABLE_BOMB, "", 7),
    ] {
        let project = TestProject::new();
        set_compiler(&project, "winch");
        let db = TestDb::new(Backend::Postgres, &project).await;
        project.sql_revision("a1", "CREATE TABLE kept (x int);", "DROP TABLE kept;");
        let dir = project.wasm_revision_bytes("b2", &component(body));
        project.set_manifest(&dir, manifest);
        let run = project.run(&db, &["-v", "up"]).fails_with(code);
        assert!(run.stderr.contains("revision b2: Winch code"), "{run:?}");
        assert_eq!(db.heads().await, ["a1"], "{run:?}");
        assert_eq!(db.history().await, ["upgrade:a1"], "{run:?}");
        db.drop_db().await;
    }

    let project = TestProject::new();
    set_compiler(&project, "winch");
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision("a1", "CREATE TABLE kept (x int);", "DROP TABLE kept;");
    project.wasm_revision_bytes("b2", &batch_component("INSERT INTO kept VALUES (1)"));
    let run = project.run(&db, &["-v", "up"]).success();
    assert!(run.stderr.contains("revision b2: Winch code"), "{run:?}");
    assert_eq!(db.count("SELECT count(*) FROM kept").await, 1);
    db.drop_db().await;
}

/// With the default `compiler = "auto"`, a run that must compile ten or more new
/// components (here a database built from its first revision), each of its own code,
/// compiles them with Winch; a later run that compiles one new component uses Cranelift;
/// `compiler = "cranelift"` never uses Winch.
#[tokio::test]
async fn a_bulk_of_new_components_is_compiled_with_winch_unless_cranelift_is_chosen() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    // An `upgrade` of its own length: no code shared but the two small functions.
    let distinct = |n: u32| {
        let own = "(drop (i32.const 7)) ".repeat(20 + n as usize);
        component(&format!("{own} (i32.const 0)"))
    };
    for n in 1..=10 {
        project.wasm_revision_bytes(&format!("a{n:02}"), &distinct(n));
    }
    let bulk = project.run(&db, &["-v", "up"]).success();
    for n in 1..=10 {
        assert!(
            bulk.stderr
                .contains(&format!("revision a{n:02}: Winch code")),
            "a{n:02}: {bulk:?}"
        );
    }
    project.wasm_revision_bytes("b11", &distinct(11));
    let one = project.run(&db, &["-v", "up"]).success();
    assert!(
        one.stderr.contains("revision b11: Cranelift code"),
        "{one:?}"
    );
    assert_eq!(db.heads().await, ["b11"]);
    db.drop_db().await;

    let project = TestProject::new();
    set_compiler(&project, "cranelift");
    let db = TestDb::new(Backend::Postgres, &project).await;
    for n in 1..=10 {
        project.wasm_revision_bytes(&format!("a{n:02}"), &distinct(n));
    }
    let run = project.run(&db, &["-v", "up"]).success();
    assert!(!run.stderr.contains("Winch"), "{run:?}");
    assert_eq!(compiled_with_cranelift(&run), 10, "{run:?}");
    db.drop_db().await;
}

/// With the default `compiler = "auto"`, a bulk of new components that share most of their
/// code (one project's revisions, built on one SDK) is Cranelift's: it compiles each shared
/// function once for the run, so the bulk costs about what Winch would, in faster code.
#[tokio::test]
async fn a_bulk_of_components_sharing_their_code_is_compiled_with_cranelift() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    let shared: String = (0..400)
        .map(|i| format!("(local.set $x (i32.add (local.get $x) (i32.const {i})))"))
        .collect();
    let family = |n: u32| {
        let wat = component_wat(&format!("(drop (i32.const {n})) (i32.const 0)")).replace(
            "(func (export \"downgrade\")",
            &format!(
                "(func (param $x i32) (result i32) {shared} (local.get $x))\n    (func (export \"downgrade\")"
            ),
        );
        wat::parse_str(wat).expect("valid WAT")
    };
    for n in 1..=10 {
        project.wasm_revision_bytes(&format!("a{n:02}"), &family(n));
    }
    let run = project.run(&db, &["-v", "up"]).success();
    assert!(!run.stderr.contains("Winch"), "{run:?}");
    assert!(
        run.stderr
            .contains("10 component(s) to compile, most of their code shared"),
        "{run:?}"
    );
    assert_eq!(compiled_with_cranelift(&run), 10, "{run:?}");
    assert_eq!(db.heads().await, ["a10"]);
    db.drop_db().await;
}

/// The cache lives in the project, which an untrusted migration's author controls: a forged
/// or altered entry must never be loaded as native code, only recompiled over.
#[tokio::test]
async fn a_forged_cache_entry_is_never_loaded() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Sqlite, &project).await;
    project.wasm_revision_bytes("a1", &component(SUCCEED));
    project.run(&db, &["up"]).success();
    project.run(&db, &["down"]).success();

    let cache = project.dir.join(".wasmig/cache");
    let entries: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let mut forged = std::fs::read(&entries[0]).unwrap();
    let last = forged.len() - 1;
    forged[last] ^= 0xff;
    std::fs::write(&entries[0], &forged).unwrap();

    let run = project.run(&db, &["up", "--json"]).success();
    assert_eq!(run.json()["steps"][0]["cache"], "miss", "{run:?}");
    assert_run!(
        "forged_cache_entry_recompiled",
        shown_log(&run, &project, Some(&db))
    );
    project.run(&db, &["down"]).success();
    // The entry was rewritten by wasmig and is trusted again.
    let run = project.run(&db, &["up", "--json"]).success();
    assert_eq!(run.json()["steps"][0]["cache"], "hit", "{run:?}");
}

/// A project's `.env` is not the user's environment: it must not choose the key that
/// authenticates cache entries, or the project's author could sign native code of their own.
#[tokio::test]
async fn a_dot_env_cannot_choose_the_compile_cache_key() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Sqlite, &project).await;
    project.wasm_revision_bytes("a1", &component(SUCCEED));
    let with_key = |key: &Path, args: &[&str]| {
        let out = wasmig_cmd(&project.dir)
            .env("WASMIG_CACHE_KEY", key)
            .args(args)
            .args(["--database-url", &db.url])
            .output()
            .unwrap();
        Run::from_output(out)
    };
    let private_dir = |dir: &Path| {
        std::fs::create_dir_all(dir).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
    };
    // The author's own key, on their own machine (outside the project).
    let authors = project.dir.with_extension("author");
    private_dir(&authors);
    let authors_key = authors.join("cache.key");
    // What the author ships: that key, and a `.env` pointing at it.
    let shipped = project.dir.join("keys");
    private_dir(&shipped.join("wasmig"));
    let dot_envs = [
        format!("WASMIG_CACHE_KEY={}\n", shipped.join("cache.key").display()),
        format!("XDG_CACHE_HOME={shipped}\n", shipped = shipped.display()),
    ];

    for dot_env in dot_envs {
        // An entry signed with the author's key, which that key accepts.
        with_key(&authors_key, &["up"]).success();
        with_key(&authors_key, &["down"]).success();
        let signed = with_key(&authors_key, &["up", "--json"]).success();
        assert_eq!(signed.json()["steps"][0]["cache"], "hit", "{signed:?}");
        with_key(&authors_key, &["down"]).success();
        std::fs::copy(&authors_key, shipped.join("cache.key")).unwrap();
        std::fs::copy(&authors_key, shipped.join("wasmig").join("cache.key")).unwrap();
        std::fs::write(project.dir.join(".env"), &dot_env).unwrap();

        let run = project.run(&db, &["up", "--json"]).success();
        assert_eq!(
            run.json()["steps"][0]["cache"],
            "miss",
            "{dot_env}: {run:?}"
        );
        assert_run!(
            "cache_key_from_dot_env_ignored",
            shown_log(&run, &project, Some(&db))
        );
        project.run(&db, &["down"]).success();
    }

    // Even from the real environment, a key inside the project is refused.
    let run = with_key(&shipped.join("cache.key"), &["up", "--json"]).success();
    assert_eq!(run.json()["steps"][0]["cache"], "disabled", "{run:?}");
    assert_run!(
        "cache_key_inside_the_project_refused",
        shown_log(&run, &project, Some(&db))
    );
    std::fs::remove_dir_all(&authors).unwrap();
}

/// Entries are named by the hash of their component, but the name is only a file name: a
/// valid entry copied over another component's entry must not run as that component.
#[tokio::test]
async fn a_cache_entry_swapped_for_another_components_is_never_loaded() {
    use sha2::Digest as _;
    let project = TestProject::new();
    let db = TestDb::new(Backend::Sqlite, &project).await;
    let succeeds = component(SUCCEED);
    let traps = component(TRAP);
    project.wasm_revision_bytes("a1", &succeeds);
    project.wasm_revision_bytes("b2", &traps);
    project.run(&db, &["up"]).fails_with(6);
    assert_eq!(db.heads().await, ["a1"]);

    let cache = project.dir.join(".wasmig/cache");
    let entry_of = |bytes: &[u8]| {
        let prefix = hex::encode(sha2::Sha256::digest(bytes));
        std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.extension().is_some_and(|x| x == "cwasm")
                    && p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with(&prefix)
            })
            .expect("an entry for the component")
    };
    // The succeeding component's native code, under the trapping one's name.
    std::fs::copy(entry_of(&succeeds), entry_of(&traps)).unwrap();

    let run = project.run(&db, &["up"]).fails_with(6);
    assert_run!(
        "swapped_cache_entry_recompiled",
        shown(&run, &project, Some(&db))
    );
    assert_eq!(db.heads().await, ["a1"]);
}

/// Limits that cannot be represented used to panic when the step ran; now they are refused
/// before anything runs, naming the manifest.
#[tokio::test]
async fn sandbox_limits_out_of_range_are_refused_before_the_first_step() {
    for (name, setting) in [
        ("timeout_out_of_range", "timeout_secs = 1e300"),
        (
            "memory_limit_out_of_range",
            "memory_limit_mib = 9223372036854775807",
        ),
    ] {
        let project = TestProject::new();
        let db = TestDb::new(Backend::Sqlite, &project).await;
        project.sql_revision("a1", "CREATE TABLE kept (x int);", "DROP TABLE kept;");
        let dir = project.wasm_revision_bytes("b2", &component(SUCCEED));
        project.set_manifest(&dir, setting);
        let run = project.run(&db, &["up"]).fails_with(3);
        assert_run!(name, shown(&run, &project, Some(&db)));
        assert!(db.heads().await.is_empty(), "{setting}: a1 ran anyway");
    }
}

/// How many components a `-v` run says Cranelift compiled in it.
fn compiled_with_cranelift(run: &Run) -> usize {
    run.stderr
        .matches("Cranelift code, compiled in this run")
        .count()
}

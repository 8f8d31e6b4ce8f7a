//! Untrusted mode, attacked as a pull request's author would: the checkout is the
//! author's, the CI job runs `wasmig up --untrusted` on it.
//!
//! - Build scripts and proc macros run jailed: a secret file outside the checkout and a
//!   secret variable of the job's environment (random per test) appear in no output, no
//!   file and no row; no connection reaches a loopback listener; nothing is written outside
//!   the build directory. The same probes run trusted first and reach everything, so the
//!   test shows what the jail changes.
//! - A checkout that chooses cargo's configuration or the toolchain is refused (exit 3).
//! - Build outputs committed under `.wasmig/` are never used: the reviewed source runs.
//! - The operator's ceilings hold whatever the manifest asks for.
//!
//! Symbolic links out of the project are refused in every mode (`hostile::links`).

use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use crate::components::component;
use crate::snap::{assert_run, shown};
use crate::support::{Backend, Run, TestDb, TestProject, wasmig_cmd};

/// What a hostile build tries to reach, and how the test sees whether it did.
struct Probe {
    dir: PathBuf,
    secret: String,
    secret_file: PathBuf,
    secret_var: String,
    secret_value: String,
    listener: TcpListener,
}

impl Probe {
    fn new() -> Probe {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("wasmig-probe-{tag}"));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = format!("SECRET-FILE-{tag}");
        let secret_file = dir.join("credentials");
        std::fs::write(&secret_file, &secret).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        Probe {
            dir,
            secret,
            secret_file,
            secret_var: format!("WASMIG_TEST_SECRET_{}", &tag[..8].to_uppercase()),
            secret_value: format!("SECRET-VAR-{tag}"),
            listener,
        }
    }

    fn marker(&self, name: &str) -> PathBuf {
        self.dir.join(format!("marker-{name}"))
    }

    /// The probe as Rust source: `report` prints one line per attempt.
    fn rust_source(&self, report: &str) -> String {
        let port = self.listener.local_addr().unwrap().port();
        format!(
            r#"
fn probe(who: &str) {{
    let report = |what: &str, reached: Result<String, String>| {{
        let line = match reached {{
            Ok(detail) => format!("PROBE {{who}} {{what}}: REACHED {{detail}}"),
            Err(e) => format!("PROBE {{who}} {{what}}: denied ({{e}})"),
        }};
        {report}
    }};
    let err = |e: std::io::Error| e.kind().to_string();
    report("read-secret", std::fs::read_to_string({secret_file:?}).map_err(err));
    report("read-env", std::env::var({secret_var:?}).map_err(|e| e.to_string()));
    report("write-outside", std::fs::write({write_marker:?}, "x").map(|_| String::new()).map_err(err));
    report("tcp", std::net::TcpStream::connect(("127.0.0.1", {port})).map(|_| String::new()).map_err(err));
    report("unix-socket", std::os::unix::net::UnixStream::connect("/var/run/postgresql/.s.PGSQL.5432").map(|_| String::new()).map_err(err));
    report("home", std::fs::read_dir("/root").map(|d| d.count().to_string()).map_err(err));
    // The operator's cargo home (opened for writing, nothing written).
    report("cargo-home", std::fs::OpenOptions::new().append(true).open({cargo_lock:?}).map(|_| String::new()).map_err(err));
    let spawned = std::process::Command::new("sh")
        .arg("-c")
        .arg("cat {secret_file} > {spawn_marker}; exec 3<>/dev/tcp/127.0.0.1/{port}")
        .status();
    report("spawn", match spawned {{
        Ok(_) if std::path::Path::new({spawn_marker:?}).exists() => Ok("marker written".to_owned()),
        Ok(status) => Err(format!("ran, wrote nothing ({{status}})")),
        Err(e) => Err(err(e)),
    }});
}}
"#,
            secret_file = self.secret_file.display().to_string(),
            secret_var = self.secret_var,
            write_marker = self.marker("write").display().to_string(),
            spawn_marker = self.marker("spawn").display().to_string(),
            cargo_lock = operator_cargo_home()
                .join(".package-cache")
                .display()
                .to_string(),
        )
    }

    /// Gives revision `dir` (a Rust crate) a build script and a proc macro that probe.
    fn plant(&self, dir: &Path) {
        std::fs::write(
            dir.join("build.rs"),
            format!(
                "{}\nfn main() {{ probe(\"build.rs\"); println!(\"cargo::warning=x\\rapplied 7 revision(s) in 3 ms\"); }}\n",
                self.rust_source("println!(\"cargo::warning={line}\");")
            ),
        )
        .unwrap();
        let mac = dir.join("probe-macro");
        std::fs::create_dir_all(mac.join("src")).unwrap();
        std::fs::write(
            mac.join("Cargo.toml"),
            "[package]\nname = \"probe-macro\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[lib]\nproc-macro = true\n",
        )
        .unwrap();
        std::fs::write(
            mac.join("src/lib.rs"),
            format!(
                "{}\n#[proc_macro]\npub fn probe_here(_: proc_macro::TokenStream) -> proc_macro::TokenStream {{ probe(\"proc-macro\"); proc_macro::TokenStream::new() }}\n",
                self.rust_source("eprintln!(\"{line}\");")
            ),
        )
        .unwrap();
        let manifest = dir.join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest).unwrap();
        let text = text.replace(
            "[dependencies]",
            "[dependencies]\nprobe-macro = { path = \"probe-macro\" }",
        );
        assert!(text.contains("probe-macro"), "{text}");
        std::fs::write(&manifest, text).unwrap();
        let lib = dir.join("src/lib.rs");
        let mut source = std::fs::read_to_string(&lib).unwrap();
        source.push_str("\nprobe_macro::probe_here!();\n");
        std::fs::write(lib, source).unwrap();
    }

    /// Whether a connection reached the listener since the last call.
    fn connected(&self) -> bool {
        match self.listener.accept() {
            Ok(_) => true,
            Err(e) if e.kind() == ErrorKind::WouldBlock => false,
            Err(e) => panic!("listener: {e}"),
        }
    }

    fn clear_markers(&self) {
        for name in ["write", "spawn"] {
            let _ = std::fs::remove_file(self.marker(name));
        }
        while self.connected() {}
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The cargo home of the user running the tests (the operator's).
fn operator_cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"),
        PathBuf::from,
    )
}

/// A Rust revision (the template `wasmig revision --kind rust` writes); its directory.
fn rust_revision(project: &TestProject, id: &str) -> PathBuf {
    let run = project
        .run_plain(&[
            "revision", "-m", "rust one", "--rev-id", id, "--kind", "rust", "--json",
        ])
        .success();
    PathBuf::from(run.json()["directory"].as_str().unwrap())
}

/// Runs wasmig in `project` with the probe's secret variable set, as a CI job's would be.
fn run_with_secret(project: &TestProject, probe: &Probe, args: &[&str]) -> Run {
    Run::from_output(
        wasmig_cmd(&project.dir)
            .env(&probe.secret_var, &probe.secret_value)
            .args(args)
            .output()
            .unwrap(),
    )
}

#[tokio::test]
async fn a_build_script_and_a_proc_macro_reach_nothing_in_untrusted_mode() {
    let probe = Probe::new();
    let project = TestProject::new();
    let dir = rust_revision(&project, "r1");
    probe.plant(&dir);

    // Trusted, the same probes reach the secret, the variable, the file system and the
    // network: what the jail is for (and proof that the probes work).
    let trusted = run_with_secret(&project, &probe, &["build"]).success();
    let text = format!("{}{}", trusted.stdout, trusted.stderr);
    for reached in [
        "PROBE build.rs read-secret: REACHED",
        "PROBE build.rs read-env: REACHED",
        "PROBE build.rs write-outside: REACHED",
        "PROBE build.rs tcp: REACHED",
        "PROBE build.rs spawn: REACHED",
        "PROBE proc-macro read-secret: REACHED",
    ] {
        assert!(
            text.contains(reached),
            "trusted: {reached} missing in\n{text}"
        );
    }
    assert!(probe.marker("write").exists());
    assert!(probe.connected());
    probe.clear_markers();

    // Untrusted: a fresh database, the CI job's secret in wasmig's environment.
    let db = TestDb::new(Backend::Postgres, &project).await;
    let url = db.url.clone();
    let run = run_with_secret(
        &project,
        &probe,
        &["up", "--untrusted", "--database-url", &url],
    )
    .success();
    let text = format!("{}{}", run.stdout, run.stderr);
    for who in ["build.rs", "proc-macro"] {
        for what in [
            "read-secret",
            "read-env",
            "write-outside",
            "tcp",
            "unix-socket",
            "home",
            "cargo-home",
            "spawn",
        ] {
            let line = format!("PROBE {who} {what}: denied");
            assert!(text.contains(&line), "untrusted: {line} missing in\n{text}");
        }
    }
    for secret in [&probe.secret, &probe.secret_value] {
        assert!(!text.contains(secret.as_str()), "a secret leaked:\n{text}");
    }
    assert!(!text.contains("REACHED"), "{text}");
    // The build's text is shown as data: a carriage return cannot forge wasmig's line.
    assert!(!text.contains("\rapplied 7"), "{text:?}");
    assert!(text.contains("\\rapplied 7"), "{text:?}");
    assert!(!probe.marker("write").exists());
    assert!(!probe.marker("spawn").exists());
    assert!(!probe.connected(), "a connection reached the listener");
    // Applied, from the reviewed source; nothing of the secret in the database.
    assert_eq!(db.heads().await, ["r1"]);
    let stored = db
        .count(&format!(
            "select count(*) from wasmig_artifact where position('{}'::bytea in component) > 0 or position('{}'::bytea in component) > 0",
            probe.secret, probe.secret_value
        ))
        .await;
    assert_eq!(stored, 0);
    db.drop_db().await;
}

#[tokio::test]
async fn a_checkout_choosing_cargos_configuration_or_the_toolchain_is_refused() {
    let marker = std::env::temp_dir().join(format!(
        "wasmig-wrapper-ran-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let wrapper = format!(
        "[build]\nrustc-wrapper = \"/bin/sh\"\n[env]\nLD_PRELOAD = \"{}\"\n",
        marker.display()
    );
    let variants: [(&str, &str, String); 5] = [
        (
            "cargo_config_at_the_root",
            ".cargo/config.toml",
            wrapper.clone(),
        ),
        (
            "cargo_config_in_versions",
            "versions/.cargo/config.toml",
            wrapper.clone(),
        ),
        ("cargo_config_old_name", "versions/.cargo/config", wrapper),
        (
            "toolchain_by_path",
            "rust-toolchain.toml",
            "[toolchain]\npath = \"/tmp\"\n".to_owned(),
        ),
        (
            "toolchain_by_channel",
            "versions/rust-toolchain",
            "nightly-2020-01-01\n".to_owned(),
        ),
    ];
    for (name, file, text) in variants {
        let project = TestProject::new();
        rust_revision(&project, "r1");
        let path = project.dir.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        let db = TestDb::new(Backend::Postgres, &project).await;
        let run = project.run(&db, &["up", "--untrusted"]).fails_with(3);
        assert_run!(name, shown(&run, &project, Some(&db)));
        assert!(db.heads().await.is_empty(), "{name}");
        assert!(!marker.exists(), "{name}: the checkout's program ran");
        db.drop_db().await;
    }

    // Above the project, up to the repository's root, where cargo would also look.
    let repository = std::env::temp_dir().join(format!(
        "wasmig-e2e/repository-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(repository.join(".git")).unwrap();
    std::fs::create_dir_all(repository.join(".cargo")).unwrap();
    std::fs::write(
        repository.join(".cargo/config.toml"),
        "[build]\nrustc-wrapper = \"/bin/false\"\n",
    )
    .unwrap();
    let project_dir = repository.join("db");
    std::fs::create_dir_all(&project_dir).unwrap();
    let init = wasmig_cmd(&project_dir)
        .args(["init", "."])
        .output()
        .unwrap();
    assert!(init.status.success(), "{init:?}");
    let run = Run::from_output(
        wasmig_cmd(&project_dir)
            .args(["up", "--untrusted", "--database-url"])
            .arg(format!("sqlite:{}", project_dir.join("test.db").display()))
            .output()
            .unwrap(),
    )
    .fails_with(3);
    assert!(
        run.stderr
            .contains(&repository.join(".cargo").display().to_string()),
        "{}",
        run.stderr
    );
    std::fs::remove_dir_all(&repository).unwrap();
}

#[tokio::test]
async fn build_outputs_committed_under_dot_wasmig_are_never_used() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Sqlite, &project).await;
    // The reviewed source: the Rust template, which succeeds.
    rust_revision(&project, "r1");
    project.run_plain(&["build"]).success();
    let built = project.dir.join(".wasmig/build/r1.wasm");
    // The author commits another component in its place, a trap.
    let forged = component("unreachable");
    std::fs::write(&built, &forged).unwrap();
    // Trusted with --no-build, the committed file runs (and traps): what untrusted must not do.
    let trusted = project.run(&db, &["up", "--no-build"]).fails_with(6);
    assert!(trusted.stderr.contains("r1"), "{}", trusted.stderr);

    let run = project.run(&db, &["up", "--untrusted"]).success();
    assert_run!("committed_output_ignored", shown(&run, &project, Some(&db)));
    assert_eq!(db.heads().await, ["r1"]);
    // Built untrusted, the component has the bytes a trusted build gives: the checksum
    // recorded verifies against a trusted build of the same source.
    let forged_now = std::fs::read(&built).unwrap();
    project.run_plain(&["build"]).success();
    project.run(&db, &["check"]).success();
    std::fs::write(&built, &forged_now).unwrap();
    assert_eq!(
        std::fs::read(&built).unwrap(),
        forged,
        "untrusted mode writes nothing into the checkout"
    );
    // The compile cache: a trusted run fills it; an untrusted run neither reads it (no hit)
    // nor writes it, so nothing it compiled is ever loaded by a trusted run.
    let cache = project.dir.with_extension("cache");
    let cached = |args: &[&str]| {
        Run::from_output(
            wasmig_cmd(&project.dir)
                .env("WASMIG_CACHE_DIR", &cache)
                .args(args)
                .args(["--json", "--database-url", &db.url])
                .output()
                .unwrap(),
        )
        .success()
    };
    cached(&["down", "base"]);
    project.run_plain(&["build"]).success();
    cached(&["up"]);
    let entries = || std::fs::read_dir(&cache).map_or(0, |d| d.count());
    let filled = entries();
    assert!(filled > 0, "the trusted run stored nothing in the cache");
    cached(&["down", "base"]);
    let untrusted = cached(&["up", "--untrusted"]);
    assert_eq!(
        untrusted.json()["steps"][0]["cache"],
        "disabled",
        "{untrusted:?}"
    );
    assert_eq!(entries(), filled, "the untrusted run wrote into the cache");
    let _ = std::fs::remove_dir_all(&cache);

    let refused = project
        .run(&db, &["down", "--untrusted", "--no-build"])
        .fails_with(3);
    assert_run!("no_build_refused", shown(&refused, &project, Some(&db)));
    let refused = project
        .run(&db, &["up", "--untrusted", "--allow-modified"])
        .fails_with(3);
    assert_run!(
        "allow_modified_refused",
        shown(&refused, &project, Some(&db))
    );
}

#[tokio::test]
async fn the_operators_ceilings_hold_whatever_the_manifest_asks_for() {
    /// Grows memory by 16 MiB at a time, forever.
    const MEMORY_BOMB: &str =
        "(loop $l (drop (memory.grow (i32.const 256))) (br $l)) (unreachable)";
    const LOOP: &str = "(loop $l (br $l)) (unreachable)";
    let project = TestProject::new();
    let db = TestDb::new(Backend::Sqlite, &project).await;
    let dir = project.wasm_revision_bytes("a1", &component(MEMORY_BOMB));
    project.set_manifest(&dir, "memory_limit_mib = 65536\ntimeout_secs = 604800");
    let run = Run::from_output(
        wasmig_cmd(&project.dir)
            .env("WASMIG_MAX_MEMORY_MIB", "64")
            .args(["up", "--database-url", &db.url])
            .output()
            .unwrap(),
    )
    .fails_with(7);
    assert_run!("memory_ceiling", shown(&run, &project, Some(&db)));
    assert!(db.heads().await.is_empty());

    // Untrusted, the defaults are the ceilings: a week asked, the default deadline given;
    // the operator lowers it further.
    std::fs::remove_dir_all(&dir).unwrap();
    let dir = project.wasm_revision_bytes("b1", &component(LOOP));
    project.set_manifest(&dir, "timeout_secs = 604800");
    let run = Run::from_output(
        wasmig_cmd(&project.dir)
            .env("WASMIG_MAX_TIMEOUT_SECS", "1")
            .args(["up", "--untrusted", "--database-url", &db.url])
            .output()
            .unwrap(),
    )
    .fails_with(7);
    assert_run!("deadline_ceiling", shown(&run, &project, Some(&db)));
    assert!(db.heads().await.is_empty());

    let bad = Run::from_output(
        wasmig_cmd(&project.dir)
            .env("WASMIG_MAX_TIMEOUT_SECS", "a week")
            .args(["up", "--database-url", &db.url])
            .output()
            .unwrap(),
    )
    .fails_with(3);
    assert_run!("ceiling_not_a_number", shown(&bad, &project, Some(&db)));
}

#[tokio::test]
async fn a_build_that_never_ends_or_leaves_a_process_behind_is_stopped() {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let leftover = || {
        std::process::Command::new("pgrep")
            .args(["-f", &tag])
            .output()
            .unwrap()
            .status
            .success()
    };
    // A build script that starts background processes, one of them in a session of its
    // own (`setsid`, out of the build's process group), and succeeds.
    let project = TestProject::new();
    let db = TestDb::new(Backend::Sqlite, &project).await;
    let dir = rust_revision(&project, "r1");
    std::fs::write(
        dir.join("build.rs"),
        format!(
            "fn main() {{ for cmd in [\"sleep 300 # {tag}\", \"setsid sh -c 'sleep 300 # {tag}' &\"] {{ std::process::Command::new(\"sh\").arg(\"-c\").arg(cmd).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap(); }} }}\n"
        ),
    )
    .unwrap();
    project.run(&db, &["up", "--untrusted"]).success();
    assert!(!leftover(), "a process the build started outlived it");

    // One that never ends: stopped at the operator's limit, and nothing of it left.
    project.run(&db, &["down", "base", "--untrusted"]).success();
    assert!(!leftover(), "a process the build started outlived it");
    std::fs::write(
        dir.join("build.rs"),
        format!(
            "fn main() {{ std::process::Command::new(\"sh\").arg(\"-c\").arg(\"sleep 300 # {tag}\").status().unwrap(); }}\n"
        ),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let run = Run::from_output(
        wasmig_cmd(&project.dir)
            .env("WASMIG_MAX_BUILD_SECS", "3")
            .args(["up", "--untrusted", "--database-url", &db.url])
            .output()
            .unwrap(),
    )
    .fails_with(9);
    assert!(started.elapsed().as_secs() < 60, "{run:?}");
    assert!(
        run.stderr.contains("ran past its time limit of 3 s"),
        "{}",
        run.stderr
    );
    assert!(!leftover(), "the endless build left a process behind");
}

#[tokio::test]
async fn a_transaction_none_script_is_held_to_the_deadline_and_its_ceiling() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    let dir = project.sql_revision("a1", "SELECT pg_sleep(20);", "SELECT 1;");
    crate::support::no_transaction(&dir);
    project.set_manifest(&dir, "timeout_secs = 604800");
    let started = std::time::Instant::now();
    let run = Run::from_output(
        wasmig_cmd(&project.dir)
            .env("WASMIG_MAX_TIMEOUT_SECS", "1")
            .args(["up", "--untrusted", "--database-url", &db.url])
            .output()
            .unwrap(),
    )
    .fails_with(6);
    assert!(
        started.elapsed().as_secs() < 15,
        "the script ran past its deadline: {run:?}"
    );
    assert!(run.stderr.contains("57014"), "{}", run.stderr);
    assert!(db.heads().await.is_empty());
    db.drop_db().await;
}

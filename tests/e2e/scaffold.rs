//! Creating a project and its revisions from the command line, the way a new user does:
//! `init`, `revision` of every kind (and its aliases), the file template, the manifest, the
//! post-write hook, then building and running what was generated.

use crate::snap::{assert_run, shown};
use crate::support::{BOTH, TestDb, TestProject};

/// `YYYY_MM_DD_HHMM-<rev>_<slug>`.
fn follows_template(name: &str, rev: &str, slug: &str) -> bool {
    let Some((stamp, rest)) = name.split_once('-') else {
        return false;
    };
    let digits: Vec<&str> = stamp.split('_').collect();
    digits.len() == 4
        && [4, 2, 2, 4]
            .iter()
            .zip(&digits)
            .all(|(n, d)| d.len() == *n && d.bytes().all(|b| b.is_ascii_digit()))
        && rest == format!("{rev}_{slug}")
}

#[tokio::test]
async fn init_and_revision_create_a_project_that_builds_and_runs() {
    for backend in BOTH {
        let project = TestProject::new();
        assert!(project.dir.join("wasmig.toml").is_file());
        assert!(project.dir.join("versions/Cargo.toml").is_file());
        // What a run leaves beside the project's files stays out of version control: the work
        // directory, the embedded database and its lock file.
        let ignored = std::fs::read_to_string(project.dir.join(".gitignore")).unwrap();
        for entry in [".wasmig/", "wasmig.db", "wasmig.db.wasmig-lock"] {
            assert!(ignored.lines().any(|l| l == entry), "{entry}: {ignored}");
        }
        // A second init is refused rather than overwriting the configuration.
        let again = project.run_plain(&["init", "."]).fails_with(3);
        assert_run!("second_init_refused", shown(&again, &project, None));

        let sql = project
            .run_plain(&[
                "revision",
                "-m",
                "Create Users!",
                "--rev-id",
                "aaa111",
                "--json",
            ])
            .success()
            .json();
        let sql_dir = std::path::PathBuf::from(sql["directory"].as_str().unwrap());
        let name = sql_dir.file_name().unwrap().to_str().unwrap();
        assert!(follows_template(name, "aaa111", "create_users"), "{name}");
        let manifest = std::fs::read_to_string(sql_dir.join("migration.toml")).unwrap();
        for field in [
            "revision = \"aaa111\"",
            "message = \"Create Users!\"",
            "kind = \"sql\"",
            "transaction = \"per-migration\"",
            "created = \"",
        ] {
            assert!(manifest.contains(field), "missing {field} in:\n{manifest}");
        }
        assert!(!manifest.contains("down_revision"), "{manifest}");
        std::fs::write(
            sql_dir.join("up.sql"),
            "CREATE TABLE users (id integer PRIMARY KEY, name text);",
        )
        .unwrap();
        std::fs::write(sql_dir.join("down.sql"), "DROP TABLE users;").unwrap();

        // `new` is an alias; the Rust revision goes on top of the head.
        let rust = project
            .run_plain(&[
                "new",
                "-m",
                "seed users",
                "--kind",
                "rust",
                "--rev-id",
                "bbb222",
                "--json",
            ])
            .success()
            .json();
        let rust_dir = std::path::PathBuf::from(rust["directory"].as_str().unwrap());
        let manifest = std::fs::read_to_string(rust_dir.join("migration.toml")).unwrap();
        assert!(
            manifest.contains("down_revision = \"aaa111\""),
            "{manifest}"
        );
        assert!(manifest.contains("kind = \"rust\""), "{manifest}");
        let workspace = std::fs::read_to_string(project.dir.join("versions/Cargo.toml")).unwrap();
        assert!(
            workspace.contains(rust_dir.file_name().unwrap().to_str().unwrap()),
            "{workspace}"
        );
        // The post-write hook (rustfmt) ran: the template is formatted.
        let lib = rust_dir.join("src/lib.rs");
        let check = std::process::Command::new("rustfmt")
            .args(["--edition", "2024", "--check"])
            .arg(&lib)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{}",
            String::from_utf8_lossy(&check.stdout)
        );
        let source = std::fs::read_to_string(&lib)
            .unwrap()
            .replace(
                "-- your SQL here",
                "INSERT INTO users (id, name) VALUES (1, 'ada')",
            )
            .replace("-- undo what upgrade did", "DELETE FROM users");
        std::fs::write(&lib, source).unwrap();

        // `create` is an alias too; the generated SQL template runs as it is (comments only).
        project
            .run_plain(&["create", "-m", "nothing yet", "--rev-id", "ccc333"])
            .success();

        let db = TestDb::new(backend, &project).await;
        let run = project.run(&db, &["up"]).success();
        assert_run!(
            "scaffolded_project_runs",
            backend,
            shown(&run, &project, Some(&db))
        );
        assert_eq!(db.heads().await, ["ccc333"], "{backend:?}");
        assert_eq!(db.strings("SELECT name FROM users").await, ["ada"]);
        let status = project.run(&db, &["status", "--json"]).success().json();
        assert_eq!(status["current"], serde_json::json!(["ccc333"]));
        assert_eq!(status["pending"], serde_json::json!([]));

        project.run(&db, &["down", "base"]).success();
        assert!(db.heads().await.is_empty());
        assert!(!db.table_exists("users").await);
        assert_eq!(
            db.history().await,
            [
                "upgrade:aaa111",
                "upgrade:bbb222",
                "upgrade:ccc333",
                "downgrade:ccc333",
                "downgrade:bbb222",
                "downgrade:aaa111"
            ]
        );
        db.drop_db().await;
    }
}

#[tokio::test]
async fn revision_refuses_bad_and_duplicate_ids() {
    let project = TestProject::new();
    project
        .run_plain(&["revision", "-m", "one", "--rev-id", "r1"])
        .success();
    let dup = project
        .run_plain(&["revision", "-m", "two", "--rev-id", "r1"])
        .fails_with(3);
    assert_run!("duplicate_rev_id", shown(&dup, &project, None));
    let bad = project
        .run_plain(&["revision", "-m", "three", "--rev-id", "a b"])
        .fails_with(3);
    assert_run!("invalid_rev_id", shown(&bad, &project, None));
}

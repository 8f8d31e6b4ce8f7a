//! Symbolic links in a checkout, in every mode: a link that leads out of the project is
//! refused wherever wasmig reads or writes through it (a revision's `up.sql`, its sources,
//! `.wasmig/`, the Rust SDK's directory), so a link to a secret does not put it in a build
//! log or the database, and a link to a directory elsewhere does not make wasmig write
//! there. Links that stay inside are followed.

use std::os::unix::fs::symlink;
use std::path::PathBuf;

use crate::snap::{assert_run, shown_with};
use crate::support::{Backend, TestDb, TestProject};

/// A directory outside the project holding a secret file.
struct Outside {
    dir: PathBuf,
    secret: String,
}

impl Outside {
    fn new() -> Outside {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("wasmig-outside-{tag}"));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = format!("SECRET-{tag}");
        std::fs::write(dir.join("secret.sql"), format!("select '{secret}';")).unwrap();
        Outside { dir, secret }
    }

    fn known(&self) -> [(&str, &str); 1] {
        [(self.dir.to_str().unwrap(), "[OUTSIDE]")]
    }

    /// What is in the outside directory besides the secret.
    fn written(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "secret.sql")
            .collect();
        names.sort();
        names
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn a_revision_file_linked_out_of_the_project_is_refused() {
    let outside = Outside::new();
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        let dir = project.sql_revision("a1", "", "select 1;");
        std::fs::remove_file(dir.join("up.sql")).unwrap();
        symlink(outside.dir.join("secret.sql"), dir.join("up.sql")).unwrap();
        let run = project.run(&db, &["up"]).fails_with(3);
        assert_run!(
            "revision_file_linked_out",
            backend,
            shown_with(&run, &project, Some(&db), &outside.known())
        );
        assert!(!run.stderr.contains(&outside.secret));
        assert!(db.heads().await.is_empty());
        // A link that stays in the project is followed.
        std::fs::remove_file(dir.join("up.sql")).unwrap();
        std::fs::write(dir.join("real.sql"), "create table linked_inside (x int);").unwrap();
        symlink("real.sql", dir.join("up.sql")).unwrap();
        project.run(&db, &["up"]).success();
        assert_eq!(db.heads().await, ["a1"]);
        db.drop_db().await;
    }
}

#[test]
fn sources_and_directories_linked_out_of_the_project_are_refused() {
    let outside = Outside::new();

    // A Python revision's helper module linked to the secret: refused before any build.
    let project = TestProject::new();
    let run = project
        .run_plain(&[
            "revision", "-m", "py", "--rev-id", "p1", "--kind", "python", "--json",
        ])
        .success();
    let dir = PathBuf::from(run.json()["directory"].as_str().unwrap());
    symlink(outside.dir.join("secret.sql"), dir.join("helpers.py")).unwrap();
    let run = project.run_plain(&["build"]).fails_with(9);
    assert_run!(
        "source_linked_out",
        shown_with(&run, &project, None, &outside.known())
    );
    assert!(!run.stderr.contains(&outside.secret));
    assert!(!project.dir.join(".wasmig/build/p1.wasm").exists());

    // `.wasmig` committed as a link to a directory elsewhere: nothing is written there.
    let project = TestProject::new();
    project
        .run_plain(&["revision", "-m", "py", "--rev-id", "p1", "--kind", "python"])
        .success();
    let _ = std::fs::remove_dir_all(project.dir.join(".wasmig"));
    symlink(&outside.dir, project.dir.join(".wasmig")).unwrap();
    let run = project.run_plain(&["build"]).fails_with(3);
    assert_run!(
        "work_dir_linked_out",
        shown_with(&run, &project, None, &outside.known())
    );
    assert_eq!(outside.written(), Vec::<String>::new());

    // The Rust SDK's directory linked elsewhere.
    let project = TestProject::new();
    project
        .run_plain(&["revision", "-m", "rs", "--rev-id", "r1", "--kind", "rust"])
        .success();
    let sdk = project.dir.join("versions/.wasmig-sdk");
    let _ = std::fs::remove_dir_all(&sdk);
    symlink(&outside.dir, &sdk).unwrap();
    let run = project.run_plain(&["build"]).fails_with(3);
    assert_run!(
        "sdk_dir_linked_out",
        shown_with(&run, &project, None, &outside.known())
    );
    assert_eq!(outside.written(), Vec::<String>::new());
}

#[tokio::test]
async fn a_fifo_or_a_device_in_place_of_a_revision_file_is_refused_without_waiting() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Sqlite, &project).await;
    let dir = project.sql_revision("a1", "", "select 1;");
    std::fs::remove_file(dir.join("up.sql")).unwrap();
    let fifo = std::ffi::CString::new(dir.join("up.sql").to_str().unwrap()).unwrap();
    // SAFETY: a plain system call on a valid path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let run = project.run(&db, &["up"]).fails_with(3);
    assert!(run.stderr.contains("not a regular file"), "{}", run.stderr);
    std::fs::remove_file(dir.join("up.sql")).unwrap();
    symlink("/dev/zero", dir.join("up.sql")).unwrap();
    project.run(&db, &["up"]).fails_with(3);
}

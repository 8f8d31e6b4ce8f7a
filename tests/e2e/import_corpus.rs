//! `wasmig import` on real public projects' migrations (issue 22): hundreds of Diesel
//! migrations each, written by others, applied by wasmig and by Diesel (its CLI, or its
//! procedure reproduced) on PostgreSQL, schemas compared. It owns that comparison and a
//! Diesel runner for it; the import and adoption themselves are tested on small fixtures in
//! `import.rs`.
//!
//! The migrations are third-party code and are not in this repository: the test runs only
//! when `WASMIG_IMPORT_CORPUS` names a directory holding them, and otherwise prints that it
//! did not run. Fetch them: the `migrations/` directory of each project at the commit
//! named in `CORPUS` below, exported with `git archive` into the corpus directory:
//!
//! ```sh
//! C=/var/tmp/wasmig-corpus
//! fetch() { # directory, repository, commit
//!     git init -q "/tmp/$1" && git -C "/tmp/$1" fetch -q --depth 1 "$2" "$3" &&
//!     mkdir -p "$C/$1" && git -C "/tmp/$1" archive "$3" migrations | tar -x -C "$C/$1"
//! }
//! fetch crates.io https://github.com/rust-lang/crates.io 57fa000662f511321daa61e6769f190ea0e80771
//! fetch lemmy https://github.com/LemmyNet/lemmy e9d49b7b49f4751b924263fdebfc1af2a387eda9
//! WASMIG_IMPORT_CORPUS=$C cargo test -p wasmig-cli --test e2e -- import_corpus
//! ```
//!
//! For each project: the directory is imported into a fresh project and `wasmig up` applies
//! it to a fresh database; a second database gets the same files from Diesel: its CLI when
//! `DIESEL` names it (`cargo install diesel_cli --no-default-features --features postgres`,
//! which needs libpq), otherwise Diesel's procedure reproduced below; a third gets the first
//! half that way, so that `__diesel_schema_migrations` is what Diesel leaves half-way, then
//! `import --adopt` and `wasmig up`. The three schemas (read from the catalogs) and every
//! table's row count must be equal.
//!
//! ```sh
//! DIESEL=~/.cargo/bin/diesel WASMIG_IMPORT_CORPUS=$C cargo test -p wasmig-cli --test e2e -- import_corpus
//! ```

use std::path::{Path, PathBuf};

use sqlx::{Connection, Executor};

use crate::import::{TOOL_TABLES, schema};
use crate::support::{Backend, TestDb, TestProject};

/// A project whose migrations the test imports: its directory under the corpus, where it
/// comes from, and the commit it was taken at.
struct Corpus {
    dir: &'static str,
    repository: &'static str,
    commit: &'static str,
}

const CORPUS: [Corpus; 2] = [
    Corpus {
        dir: "crates.io/migrations",
        repository: "https://github.com/rust-lang/crates.io",
        commit: "57fa000662f511321daa61e6769f190ea0e80771",
    },
    // Lemmy 0.19.20: its later migrations need PostgreSQL 16.
    Corpus {
        dir: "lemmy/migrations",
        repository: "https://github.com/LemmyNet/lemmy",
        commit: "e9d49b7b49f4751b924263fdebfc1af2a387eda9",
    },
];

/// One Diesel migration as Diesel's harness (`diesel_migrations` 2.x, `FileBasedMigrations`
/// and `HarnessWithOutput::run_pending_migrations`) sees it. Written here from Diesel's
/// behaviour, not from wasmig's importer, so that the two are checked against each other.
struct DieselMigration {
    version: String,
    /// Its directory.
    dir: PathBuf,
    in_transaction: bool,
}

/// Every directory with an `up.sql` (its version: its name up to the first `_`, dashes
/// removed), in version order compared as strings.
fn diesel_migrations(dir: &Path) -> Vec<DieselMigration> {
    let mut migrations: Vec<DieselMigration> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("up.sql").is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let version = name.split('_').next().unwrap().replace('-', "");
            // `metadata.toml` with `run_in_transaction = false`; Diesel reads anything else
            // (an unparsable file included) as the default, true.
            let in_transaction = std::fs::read_to_string(p.join("metadata.toml"))
                .map(|t| {
                    !t.lines()
                        .any(|l| l.replace(' ', "").trim() == "run_in_transaction=false")
                })
                .unwrap_or(true);
            DieselMigration {
                version,
                dir: p,
                in_transaction,
            }
        })
        .collect();
    migrations.sort_by(|a, b| a.version.cmp(&b.version));
    migrations
}

/// What Diesel does: creates its table, then per migration sends `up.sql` as one
/// simple-protocol script (`batch_execute`) and records the version, both in one transaction
/// unless the migration says otherwise.
async fn diesel_run(db: &TestDb, migrations: &[DieselMigration]) {
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    conn.execute(
        "CREATE TABLE IF NOT EXISTS __diesel_schema_migrations (
             version VARCHAR(50) PRIMARY KEY NOT NULL,
             run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)",
    )
    .await
    .unwrap();
    for m in migrations {
        let up = sqlx::AssertSqlSafe(std::fs::read_to_string(m.dir.join("up.sql")).unwrap());
        let record = sqlx::query("INSERT INTO __diesel_schema_migrations (version) VALUES ($1)")
            .bind(&m.version);
        let applied = if m.in_transaction {
            let mut tx = conn.begin().await.unwrap();
            let applied = sqlx::raw_sql(up).execute(&mut *tx).await;
            if applied.is_ok() {
                record.execute(&mut *tx).await.unwrap();
                tx.commit().await.unwrap();
            }
            applied
        } else {
            let applied = sqlx::raw_sql(up).execute(&mut conn).await;
            if applied.is_ok() {
                record.execute(&mut conn).await.unwrap();
            }
            applied
        };
        if let Err(e) = applied {
            panic!("diesel's way, {}: {e}", m.dir.display());
        }
    }
}

/// Diesel's CLI (`DIESEL`, e.g. after `cargo install diesel_cli --no-default-features
/// --features postgres`) runs `migrations` (copied into `scratch` unless they are the whole
/// directory `source`) on `db`; without `DIESEL`, `diesel_run` does what it would. Returns
/// which of the two ran.
async fn by_diesel_way(
    db: &TestDb,
    source: &Path,
    migrations: &[DieselMigration],
    scratch: &Path,
) -> &'static str {
    let Some(diesel) = std::env::var_os("DIESEL") else {
        diesel_run(db, migrations).await;
        return "its procedure, reproduced (set DIESEL to run diesel_cli)";
    };
    let all = diesel_migrations(source).len() == migrations.len();
    let dir = if all {
        source.to_owned()
    } else {
        std::fs::create_dir_all(scratch).unwrap();
        for m in migrations {
            let to = scratch.join(m.dir.file_name().unwrap());
            std::fs::create_dir_all(&to).unwrap();
            for file in std::fs::read_dir(&m.dir).unwrap() {
                let file = file.unwrap().path();
                std::fs::copy(&file, to.join(file.file_name().unwrap())).unwrap();
            }
        }
        scratch.to_owned()
    };
    // From a directory without a diesel.toml or Cargo.toml above it, so that Diesel has no
    // schema file to print.
    let cwd = std::env::temp_dir();
    let out = std::process::Command::new(diesel)
        .current_dir(cwd)
        .args(["migration", "run", "--migration-dir"])
        .arg(&dir)
        .args(["--database-url", &db.url])
        .output()
        .unwrap();
    assert!(out.status.success(), "diesel migration run: {out:?}");
    let recorded = db
        .count("SELECT count(*) FROM __diesel_schema_migrations")
        .await;
    assert_eq!(recorded, migrations.len() as i64, "{}", dir.display());
    "diesel_cli"
}

/// Every table's row count in the public schema (the migrations also insert data), but the
/// tools' and wasmig's own tables.
async fn rows(db: &TestDb) -> String {
    db.strings(&format!(
        "SELECT tablename || ' ' || (xpath('/row/n/text()',
             query_to_xml(format('SELECT count(*) AS n FROM public.%I', tablename), false, true, '')))[1]::text
         FROM pg_tables WHERE schemaname = 'public' AND tablename NOT IN ({TOOL_TABLES})
             AND tablename NOT LIKE 'wasmig%'
         ORDER BY 1"
    ))
    .await
    .join("\n")
}

/// Fails naming the lines only one side has (a real project's schema is thousands of lines).
fn assert_same(source: &str, what: &str, wasmig: &str, other: &str) {
    if wasmig == other {
        return;
    }
    let only = |a: &str, b: &str| {
        let b: std::collections::HashSet<&str> = b.lines().collect();
        a.lines()
            .filter(|l| !b.contains(l))
            .collect::<Vec<_>>()
            .join("\n")
    };
    panic!(
        "{source}: {what} differs (the same lines in another order if both lists are empty)\n\
         only after wasmig up:\n{}\nonly the other way:\n{}",
        only(wasmig, other),
        only(other, wasmig)
    );
}

#[tokio::test]
async fn real_diesel_projects_import_apply_and_adopt_as_diesel_would() {
    let Some(root) = std::env::var_os("WASMIG_IMPORT_CORPUS") else {
        println!(
            "import_corpus: did not run: WASMIG_IMPORT_CORPUS is not set (see tests/e2e/import_corpus.rs)"
        );
        return;
    };
    let root = PathBuf::from(root);
    for corpus in &CORPUS {
        let source = root.join(corpus.dir);
        assert!(
            source.is_dir(),
            "WASMIG_IMPORT_CORPUS is set but has no {}: export it from {} at {} (see tests/e2e/import_corpus.rs)",
            corpus.dir,
            corpus.repository,
            corpus.commit
        );
        let source = source.to_str().unwrap();
        let migrations = diesel_migrations(Path::new(source));
        assert!(migrations.len() > 200, "{source}: {}", migrations.len());
        let last = &migrations.last().unwrap().version;

        let project = TestProject::new();
        let fresh = TestDb::new(Backend::Postgres, &project).await;
        project
            .run(&fresh, &["import", "--from", "diesel", source])
            .success();
        project.run(&fresh, &["up"]).success();
        assert_eq!(fresh.heads().await, [last.as_str()], "{source}");
        let expected = schema(&fresh).await;
        let expected_rows = rows(&fresh).await;

        let by_diesel = TestDb::new(Backend::Postgres, &project).await;
        let scratch = project.dir.join("diesel-half");
        let diesel = by_diesel_way(&by_diesel, Path::new(source), &migrations, &scratch).await;
        let what = "the schema Diesel's way";
        assert_same(source, what, &expected, &schema(&by_diesel).await);
        let what = "the row counts Diesel's way";
        assert_same(source, what, &expected_rows, &rows(&by_diesel).await);

        // Diesel applied the first half; wasmig takes over from there.
        let half = migrations.len() / 2;
        let adopted = TestDb::new(Backend::Postgres, &project).await;
        by_diesel_way(&adopted, Path::new(source), &migrations[..half], &scratch).await;
        project
            .run(&adopted, &["import", "--from", "diesel", source, "--adopt"])
            .success();
        assert_eq!(
            adopted.heads().await,
            [migrations[half - 1].version.as_str()],
            "{source}"
        );
        project.run(&adopted, &["up"]).success();
        assert_eq!(adopted.heads().await, [last.as_str()], "{source}");
        let upgrades = adopted
            .count("SELECT count(*) FROM wasmig_history WHERE direction = 'upgrade'")
            .await;
        assert_eq!(upgrades, (migrations.len() - half) as i64, "{source}");
        let what = "the schema adopted half-way";
        assert_same(source, what, &expected, &schema(&adopted).await);
        let what = "the row counts adopted half-way";
        assert_same(source, what, &expected_rows, &rows(&adopted).await);

        println!(
            "import_corpus: {source}: {} migrations; schemas ({} catalog lines) and row counts of {} tables equal; Diesel's side: {diesel}",
            migrations.len(),
            expected.lines().count(),
            expected_rows.lines().count()
        );
        for db in [fresh, by_diesel, adopted] {
            db.drop_db().await;
        }
    }
}

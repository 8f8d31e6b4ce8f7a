//! `wasmig import` and `--adopt`, one test per tool on PostgreSQL: the same four migrations
//! written in the tool's format (the second holds two statements, the third
//! `CREATE INDEX CONCURRENTLY`, which fails in a transaction, the fourth a PL/pgSQL function
//! and a view) are imported and applied by wasmig to one database; on another, the tool's
//! history table says the first two were applied (written by the real tool for sqlx, through
//! its migrator, and dbmate; as the tool's documentation lays it out for the others),
//! `import --adopt` takes that over and `wasmig up` runs only the last
//! two (the first, `CREATE TABLE`, fails if run again). Both schemas, read from the
//! catalogs, are the one snapshot every tool shares. On SQLite, one adoption (sqlx) and a
//! later migration imported on top. And the refusals: dirty, a gap, a changed file, no
//! table.

use std::path::Path;

use crate::snap::{assert_run, shown, shown_error};
use crate::support::{Backend, TestDb, TestProject};

const GRAPH: i32 = 4;
const CONFIG: i32 = 3;
const MODIFIED: i32 = 12;
const FAILED_STATE: i32 = 13;

const ACCOUNTS: &str = "CREATE TABLE accounts (id bigint PRIMARY KEY, email text NOT NULL);\n";
const ACCOUNTS_DOWN: &str = "DROP TABLE accounts;\n";
const POSTS: &str = "CREATE TABLE posts (id bigint PRIMARY KEY, account_id bigint NOT NULL REFERENCES accounts (id), title text);\nCREATE INDEX posts_account ON posts (account_id);\n";
const POSTS_DOWN: &str = "DROP TABLE posts;\n";
const EMAIL: &str = "CREATE INDEX CONCURRENTLY accounts_email ON accounts (email);\n";
const EMAIL_DOWN: &str = "DROP INDEX CONCURRENTLY accounts_email;\n";
const FUNCTION: &str = "CREATE FUNCTION title_of(p bigint) RETURNS text LANGUAGE plpgsql AS $$\nBEGIN\n  RETURN (SELECT title FROM posts WHERE id = p);\nEND;\n$$;\n";
const VIEW: &str = "CREATE VIEW titled AS SELECT id, title FROM posts WHERE title IS NOT NULL;\n";
const VIEW_DOWN: &str = "DROP VIEW titled;\nDROP FUNCTION title_of(bigint);\n";

/// The tables the tools keep their history in, left out of the schema compared.
pub(crate) const TOOL_TABLES: &str = "'__diesel_schema_migrations', '_sqlx_migrations', 'schema_migrations', 'goose_db_version', 'flyway_schema_history', 'refinery_schema_history'";

/// One tool's fixture and what it looks like after the tool applied the first two.
struct Case {
    format: &'static str,
    files: Vec<(String, String)>,
    /// The ids the four migrations become.
    ids: [&'static str; 4],
}

fn write_files(dir: &Path, files: &[(String, String)]) {
    for (path, text) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

fn files(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(p, t)| ((*p).to_owned(), t.clone()))
        .collect()
}

/// The public schema as `wasmig test` reads it (`wasmig::db::snapshot`): columns, indexes
/// (invalid ones marked), constraints, sequences, functions, views, triggers, types and
/// extensions, one `key: definition` line each, but the tools' and wasmig's own tables. Also
/// compares the real projects' schemas (`import_corpus.rs`).
pub(crate) async fn schema(db: &TestDb) -> String {
    let url = wasmig::db::DatabaseUrl::parse(&db.url).unwrap();
    let connected = wasmig::db::connect(
        &url,
        "public",
        None,
        &Default::default(),
        wasmig::db::Intent::Read,
    )
    .await
    .unwrap();
    let read = wasmig::db::snapshot::snapshot(connected.as_ref(), "public").await;
    connected.close().await;
    let tools: Vec<&str> = TOOL_TABLES
        .split(", ")
        .map(|t| t.trim_matches('\''))
        .collect();
    let mut schema = read.unwrap();
    // A tool's table, and its index, constraints and sequence (named after the table).
    schema.objects.retain(|key, _| {
        let name = key.split_once(" public.").map_or("", |(_, name)| name);
        !tools.iter().any(|t| name.starts_with(t))
    });
    schema.to_text()
}

/// Imports and applies `case` on a fresh database; on another, runs `tool_applied_half` (the
/// tool having applied the first two), adopts, and applies the rest. Returns the project and
/// the adopted database for more checks.
async fn import_apply_and_adopt(
    case: &Case,
    tool_applied_half: impl AsyncFnOnce(&TestDb, &Path),
) -> (TestProject, TestDb) {
    let project = TestProject::new();
    let source = project.dir.join("source");
    write_files(&source, &case.files);

    let fresh = TestDb::new(Backend::Postgres, &project).await;
    project
        .run(&fresh, &["import", "--from", case.format, "source"])
        .success();
    project.run(&fresh, &["up"]).success();
    assert_eq!(fresh.heads().await, [case.ids[3]]);

    let adopted = TestDb::new(Backend::Postgres, &project).await;
    tool_applied_half(&adopted, &source).await;
    // Importing again keeps the revisions written above (same files), and adopts.
    project
        .run(
            &adopted,
            &["import", "--from", case.format, "source", "--adopt"],
        )
        .success();
    assert_eq!(adopted.heads().await, [case.ids[1]]);
    // ACCOUNTS fails if it runs again: `up` runs the other two only.
    project.run(&adopted, &["up"]).success();
    let [a, b, c, d] = case.ids;
    assert_eq!(
        adopted.history().await,
        [
            format!("stamp:{b}"),
            format!("rehash:{a}"),
            format!("rehash:{b}"),
            format!("upgrade:{c}"),
            format!("upgrade:{d}"),
        ]
    );
    // A later edit of an adopted revision is caught like any applied revision's.
    project.run(&adopted, &["check"]).success();

    let schema_fresh = schema(&fresh).await;
    assert_eq!(schema_fresh, schema(&adopted).await);
    insta::assert_snapshot!("schema", schema_fresh);
    fresh.drop_db().await;
    (project, adopted)
}

/// A manifest of an imported revision, by id.
fn manifest(project: &TestProject, id: &str) -> String {
    let versions = project.dir.join("versions");
    for entry in std::fs::read_dir(&versions).unwrap() {
        let path = entry.unwrap().path().join("migration.toml");
        if let Ok(text) = std::fs::read_to_string(&path)
            && text.lines().any(|l| l == format!("revision = \"{id}\""))
        {
            return text;
        }
    }
    panic!("no revision {id} in {}", versions.display());
}

/// The first two diesel migrations and `__diesel_schema_migrations` as Diesel leaves them.
fn diesel_half() -> String {
    format!(
        "{ACCOUNTS}{POSTS}
         CREATE TABLE __diesel_schema_migrations (version VARCHAR(50) PRIMARY KEY NOT NULL,
             run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP);
         INSERT INTO __diesel_schema_migrations (version)
             VALUES ('20200101000001'), ('20200101000002');"
    )
}

#[tokio::test]
async fn diesel_migrations_are_imported_and_adopted() {
    let case = Case {
        format: "diesel",
        files: files(&[
            ("diesel.toml", String::new()),
            ("2020-01-01-000001_create accounts/up.sql", ACCOUNTS.into()),
            (
                "2020-01-01-000001_create accounts/down.sql",
                ACCOUNTS_DOWN.into(),
            ),
            ("2020-01-01-000002_create_posts/up.sql", POSTS.into()),
            ("2020-01-01-000002_create_posts/down.sql", POSTS_DOWN.into()),
            ("2020-01-01-000003_email/up.sql", EMAIL.into()),
            ("2020-01-01-000003_email/down.sql", EMAIL_DOWN.into()),
            (
                "2020-01-01-000003_email/metadata.toml",
                "run_in_transaction = false\n".into(),
            ),
            ("2020-01-01-000004_view/up.sql", format!("{FUNCTION}{VIEW}")),
            ("2020-01-01-000004_view/down.sql", VIEW_DOWN.into()),
        ]),
        ids: [
            "20200101000001",
            "20200101000002",
            "20200101000003",
            "20200101000004",
        ],
    };
    // What the import writes and the adoption would record, before doing either (the log,
    // and the JSON document).
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    write_files(&project.dir.join("source"), &case.files);
    db.exec(&diesel_half()).await;
    let dry = project.run(
        &db,
        &[
            "import",
            "--from",
            "diesel",
            "source",
            "--adopt",
            "--dry-run",
            "--json",
        ],
    );
    assert_run!("diesel_dry_run", shown(&dry.success(), &project, Some(&db)));
    assert!(!db.table_exists("wasmig_version").await);
    db.drop_db().await;

    let (project, adopted) = import_apply_and_adopt(&case, async |db: &TestDb, _: &Path| {
        db.exec(&diesel_half()).await;
    })
    .await;
    let first = manifest(&project, "20200101000001");
    assert!(
        first.contains("message = \"create accounts\"")
            && first.contains("imported_from = \"diesel 2020-01-01-000001_create accounts/\""),
        "{first}"
    );
    assert!(manifest(&project, "20200101000003").contains("transaction = \"none\""));
    // The whole chain goes back down with the tool's own down scripts.
    project.run(&adopted, &["down", "base"]).success();
    assert_eq!(
        adopted
            .count("SELECT count(*) FROM pg_tables WHERE tablename IN ('accounts', 'posts')")
            .await,
        0
    );
    adopted.drop_db().await;
}

#[tokio::test]
async fn sqlx_migrations_are_imported_and_adopted() {
    let no_tx = format!("-- no-transaction\n{EMAIL}");
    let case = Case {
        format: "sqlx",
        files: files(&[
            ("1_create_accounts.sql", ACCOUNTS.into()),
            ("2_create_posts.up.sql", POSTS.into()),
            ("2_create_posts.down.sql", POSTS_DOWN.into()),
            ("3_email.sql", no_tx),
            ("4_view.up.sql", format!("{FUNCTION}{VIEW}")),
            ("4_view.down.sql", VIEW_DOWN.into()),
        ]),
        ids: ["1", "2", "3", "4"],
    };
    let (_project, adopted) = import_apply_and_adopt(&case, async |db: &TestDb, source: &Path| {
        // sqlx's own migrator applies the first two (a directory holding only them), and
        // writes `_sqlx_migrations` with its checksums.
        let half = source.with_file_name("sqlx-half");
        std::fs::create_dir_all(&half).unwrap();
        for name in [
            "1_create_accounts.sql",
            "2_create_posts.up.sql",
            "2_create_posts.down.sql",
        ] {
            std::fs::copy(source.join(name), half.join(name)).unwrap();
        }
        let migrator = sqlx::migrate::Migrator::new(half).await.unwrap();
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
            .await
            .unwrap();
        migrator.run(&mut conn).await.unwrap();
        assert_eq!(
            db.strings("SELECT version::text FROM _sqlx_migrations ORDER BY 1")
                .await,
            ["1", "2"]
        );
    })
    .await;
    adopted.drop_db().await;
}

/// `_sqlx_migrations` as sqlx creates and fills it (the checksum: SHA-384 of the file),
/// after running the given migrations' SQL: for a state sqlx's migrator would not make.
fn sqlx_table(applied: &[(i64, &str, &str)]) -> String {
    let mut sql = String::from(
        "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL,
             installed_on TIMESTAMPTZ NOT NULL DEFAULT now(), success BOOLEAN NOT NULL,
             checksum BYTEA NOT NULL, execution_time BIGINT NOT NULL);\n",
    );
    for (version, description, file) in applied {
        sql.push_str(&format!(
            "{file}INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES ({version}, '{description}', true, sha384(convert_to($file${file}$file$, 'UTF8')), 1);\n"
        ));
    }
    sql
}

#[tokio::test]
async fn golang_migrate_migrations_are_imported_and_adopted() {
    let case = Case {
        format: "golang-migrate",
        files: files(&[
            ("000001_create_accounts.up.sql", ACCOUNTS.into()),
            ("000001_create_accounts.down.sql", ACCOUNTS_DOWN.into()),
            ("000002_create_posts.up.sql", POSTS.into()),
            ("000002_create_posts.down.sql", POSTS_DOWN.into()),
            ("000003_email.up.sql", EMAIL.into()),
            ("000003_email.down.sql", EMAIL_DOWN.into()),
            ("000004_view.up.sql", format!("{FUNCTION}{VIEW}")),
            ("000004_view.down.sql", VIEW_DOWN.into()),
        ]),
        ids: ["1", "2", "3", "4"],
    };
    let (_project, adopted) = import_apply_and_adopt(&case, async |db: &TestDb, _: &Path| {
        db.exec(&format!(
            "{ACCOUNTS}{POSTS}
             CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL);
             INSERT INTO schema_migrations VALUES (2, false);"
        ))
        .await;
    })
    .await;
    adopted.drop_db().await;
}

/// dbmate from npm (`npm install -g dbmate@2.36.0`, which ships its binary), or `$DBMATE`.
fn dbmate() -> std::process::Command {
    let program = std::env::var("DBMATE").unwrap_or_else(|_| "dbmate".into());
    std::process::Command::new(program)
}

#[tokio::test]
async fn dbmate_migrations_are_imported_and_adopted_from_what_dbmate_applied() {
    let dbmate_file = |up: &str, down: &str, options: &str| {
        format!("-- migrate:up{options}\n{up}\n-- migrate:down{options}\n{down}")
    };
    let case = Case {
        format: "dbmate",
        files: files(&[
            (
                "20200101000001_create_accounts.sql",
                dbmate_file(ACCOUNTS, ACCOUNTS_DOWN, ""),
            ),
            (
                "20200101000002_create_posts.sql",
                dbmate_file(POSTS, POSTS_DOWN, ""),
            ),
            (
                "20200101000003_email.sql",
                dbmate_file(EMAIL, EMAIL_DOWN, " transaction:false"),
            ),
            (
                "20200101000004_view.sql",
                dbmate_file(&format!("{FUNCTION}{VIEW}"), VIEW_DOWN, ""),
            ),
        ]),
        ids: [
            "20200101000001",
            "20200101000002",
            "20200101000003",
            "20200101000004",
        ],
    };
    let (_project, adopted) = import_apply_and_adopt(&case, async |db: &TestDb, source: &Path| {
        // dbmate itself applies the first two (a directory holding only them).
        let half = source.with_file_name("dbmate-half");
        std::fs::create_dir_all(&half).unwrap();
        for name in [
            "20200101000001_create_accounts.sql",
            "20200101000002_create_posts.sql",
        ] {
            std::fs::copy(source.join(name), half.join(name)).unwrap();
        }
        let out = dbmate()
            .args(["--url", &format!("{}?sslmode=disable", db.url)])
            .args(["--migrations-dir", half.to_str().unwrap()])
            .args(["--no-dump-schema", "up"])
            .output()
            .expect("dbmate must be installed for this test: npm install -g dbmate@2.36.0 (or set DBMATE)");
        assert!(out.status.success(), "dbmate up: {out:?}");
        assert_eq!(
            db.strings("SELECT version FROM schema_migrations ORDER BY 1").await,
            ["20200101000001", "20200101000002"]
        );
    })
    .await;
    adopted.drop_db().await;
}

#[tokio::test]
async fn goose_migrations_are_imported_and_adopted() {
    let goose_function = format!(
        "-- +goose Up\n-- +goose StatementBegin\n{FUNCTION}-- +goose StatementEnd\n{VIEW}\n-- +goose Down\n{VIEW_DOWN}"
    );
    let case = Case {
        format: "goose",
        files: files(&[
            (
                "00001_create_accounts.sql",
                format!("-- +goose Up\n{ACCOUNTS}\n-- +goose Down\n{ACCOUNTS_DOWN}"),
            ),
            (
                "00002_create_posts.sql",
                format!("-- +goose Up\n-- the posts\n{POSTS}-- +goose Down\n{POSTS_DOWN}"),
            ),
            (
                "00003_email.sql",
                format!(
                    "-- +goose NO TRANSACTION\n-- +goose Up\n{EMAIL}-- +goose Down\n{EMAIL_DOWN}"
                ),
            ),
            ("00004_view.sql", goose_function),
        ]),
        ids: ["1", "2", "3", "4"],
    };
    let (_project, adopted) = import_apply_and_adopt(&case, async |db: &TestDb, _: &Path| {
        db.exec(&format!(
            "{ACCOUNTS}{POSTS}
             CREATE TABLE goose_db_version (id serial NOT NULL, version_id bigint NOT NULL,
                 is_applied boolean NOT NULL, tstamp timestamp NULL DEFAULT now(), PRIMARY KEY (id));
             INSERT INTO goose_db_version (version_id, is_applied)
                 VALUES (0, true), (1, true), (2, true), (3, true), (3, false);"
        ))
        .await;
    })
    .await;
    adopted.drop_db().await;
}

#[tokio::test]
async fn flyway_migrations_are_imported_and_adopted() {
    let case = Case {
        format: "flyway",
        files: files(&[
            ("V1__create_accounts.sql", ACCOUNTS.into()),
            ("V1_1__create_posts.sql", POSTS.into()),
            ("U1_1__create_posts.sql", POSTS_DOWN.into()),
            ("V2__email.sql", EMAIL.into()),
            ("V10__view.sql", format!("{FUNCTION}{VIEW}")),
        ]),
        ids: ["1", "1_1", "2", "10"],
    };
    let (_project, adopted) = import_apply_and_adopt(&case, async |db: &TestDb, _: &Path| {
        // The checksums are Flyway's CRC32 of the files' lines (computed with Python's zlib).
        db.exec(&format!(
            "{ACCOUNTS}{POSTS}
             CREATE TABLE flyway_schema_history (installed_rank INT NOT NULL PRIMARY KEY,
                 version VARCHAR(50), description VARCHAR(200) NOT NULL, type VARCHAR(20) NOT NULL,
                 script VARCHAR(1000) NOT NULL, checksum INTEGER, installed_by VARCHAR(100) NOT NULL,
                 installed_on TIMESTAMP NOT NULL DEFAULT now(), execution_time INTEGER NOT NULL,
                 success BOOLEAN NOT NULL);
             INSERT INTO flyway_schema_history VALUES
                 (1, '1', 'create accounts', 'SQL', 'V1__create_accounts.sql', 888272464, 'postgres', now(), 3, true),
                 (2, '1.1', 'create posts', 'SQL', 'V1_1__create_posts.sql', 1607979626, 'postgres', now(), 4, true);"
        ))
        .await;
    })
    .await;
    adopted.drop_db().await;
}

#[tokio::test]
async fn refinery_migrations_are_imported_and_adopted() {
    let case = Case {
        format: "refinery",
        files: files(&[
            ("V1__create_accounts.sql", ACCOUNTS.into()),
            ("nested/V2__create_posts.sql", POSTS.into()),
            (
                "V3__email.sql",
                format!("-- refinery:noTransaction\n{EMAIL}"),
            ),
            ("V4__view.sql", format!("{FUNCTION}{VIEW}")),
        ]),
        ids: ["1", "2", "3", "4"],
    };
    let (_project, adopted) = import_apply_and_adopt(&case, async |db: &TestDb, _: &Path| {
        db.exec(&format!(
            "{ACCOUNTS}{POSTS}
             CREATE TABLE refinery_schema_history (version INT4 PRIMARY KEY, name VARCHAR(255),
                 applied_on VARCHAR(255), checksum VARCHAR(255));
             INSERT INTO refinery_schema_history VALUES
                 (1, 'create_accounts', '2026-12-01T00:00:00Z', '1'),
                 (2, 'create_posts', '2026-12-01T00:00:00Z', '2');"
        ))
        .await;
    })
    .await;
    adopted.drop_db().await;
}

#[tokio::test]
async fn sqlx_state_is_adopted_on_sqlite_and_a_later_migration_imported_on_top() {
    use sha2::Digest as _;
    let project = TestProject::new();
    let db = TestDb::new(Backend::Sqlite, &project).await;
    let source = project.dir.join("source");
    let accounts = "CREATE TABLE accounts (id INTEGER PRIMARY KEY);\n";
    let table = |name: &str| format!("CREATE TABLE {name} (id INTEGER PRIMARY KEY);\n");
    write_files(
        &source,
        &files(&[
            ("1_accounts.sql", table("accounts")),
            ("2_posts.sql", table("posts")),
        ]),
    );
    // sqlx on SQLite: the checksum a BLOB, success an integer.
    let checksum = hex::encode(sha2::Sha384::digest(accounts.as_bytes()));
    db.exec(&format!(
        "{accounts}CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL,
             installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL,
             checksum BLOB NOT NULL, execution_time BIGINT NOT NULL);
         INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES (1, 'accounts', 1, X'{checksum}', 1);"
    ))
    .await;
    project
        .run(&db, &["import", "--from", "sqlx", "source", "--adopt"])
        .success();
    project.run(&db, &["up"]).success();
    assert_eq!(db.history().await, ["stamp:1", "rehash:1", "upgrade:2"]);
    // The old tool's directory grew meanwhile: importing again adds only the new migration,
    // on top of the others.
    write_files(&source, &files(&[("3_tags.sql", table("tags"))]));
    project
        .run(&db, &["import", "--from", "sqlx", "source"])
        .success();
    project.run(&db, &["up"]).success();
    assert_eq!(db.heads().await, ["3"]);
    // One the tool sorts before those imported cannot be added: the chain only grows at
    // its end.
    write_files(&source, &files(&[("0_early.sql", table("early"))]));
    let refused = project
        .run(&db, &["import", "--from", "sqlx", "source"])
        .fails_with(CONFIG);
    assert!(
        refused
            .stderr
            .contains("sqlx migration 0 (0_early.sql) sorts before 1"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        db.count("SELECT count(*) FROM sqlite_master WHERE name IN ('accounts', 'posts', 'tags')")
            .await,
        3
    );
}

/// A tool, its migration files, and the exit code its refusal has.
type Refusal = (&'static str, &'static [(&'static str, &'static str)], i32);

#[tokio::test]
async fn adoption_refuses_dirty_gapped_changed_or_missing_state_and_changes_nothing() {
    let db_project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &db_project).await;
    db.exec(&format!(
        "CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL);
         INSERT INTO schema_migrations VALUES (2, true);
         CREATE TABLE __diesel_schema_migrations (version VARCHAR(50) PRIMARY KEY NOT NULL);
         INSERT INTO __diesel_schema_migrations VALUES ('1'), ('3');
         {}",
        sqlx_table(&[(1, "create accounts", "SELECT 'not what the file says';\n")])
    ))
    .await;
    let cases: [Refusal; 4] = [
        (
            "golang-migrate",
            &[("1_a.up.sql", ACCOUNTS), ("2_b.up.sql", POSTS)],
            FAILED_STATE,
        ),
        (
            "diesel",
            &[
                ("1_a/up.sql", ACCOUNTS),
                ("2_b/up.sql", POSTS),
                ("3_c/up.sql", EMAIL),
            ],
            GRAPH,
        ),
        ("sqlx", &[("1_create_accounts.sql", ACCOUNTS)], MODIFIED),
        ("goose", &[("1_a.sql", "-- +goose Up\nSELECT 1;\n")], CONFIG),
    ];
    let mut shown = String::new();
    for (format, fixture, code) in cases {
        let project = TestProject::new();
        let pairs: Vec<(String, String)> = fixture
            .iter()
            .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
            .collect();
        write_files(&project.dir.join("source"), &pairs);
        let run = project
            .run(&db, &["import", "--from", format, "source", "--adopt"])
            .fails_with(code);
        shown.push_str(&format!(
            "--- {format}\n{}",
            shown_error(&run, &project, Some(&db))
        ));
        // Nothing written: no revision, no wasmig table.
        let versions: Vec<_> = std::fs::read_dir(project.dir.join("versions"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.') && n != "Cargo.toml")
            .collect();
        assert!(versions.is_empty(), "{format}: {versions:?}");
        assert!(!db.table_exists("wasmig_history").await, "{format}");
    }
    assert_run!("adoption_refusals", shown);
    db.drop_db().await;
}

/// The migration table of `manifest`'s revision in the `revisions` of `--json` output.
fn json_revision(run: &crate::support::Run, id: &str) -> serde_json::Value {
    run.json()["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["revision"] == id)
        .unwrap_or_else(|| panic!("no revision {id}: {}", run.stdout))
        .clone()
}

/// The `up.sql` of an imported revision, by id.
fn up_sql(project: &TestProject, id: &str) -> String {
    let versions = project.dir.join("versions");
    for entry in std::fs::read_dir(&versions).unwrap() {
        let dir = entry.unwrap().path();
        if let Ok(text) = std::fs::read_to_string(dir.join("migration.toml"))
            && text.lines().any(|l| l == format!("revision = \"{id}\""))
        {
            return std::fs::read_to_string(dir.join("up.sql")).unwrap();
        }
    }
    panic!("no revision {id} in {}", versions.display());
}

#[tokio::test]
async fn a_file_wrapped_in_begin_and_commit_is_imported_without_them_in_one_transaction() {
    // golang-migrate's PostgreSQL tutorial wraps each file in BEGIN; ... COMMIT; (the tool
    // opens no transaction of its own).
    let wrapped = "-- users, as the tutorial writes them\nBEGIN;\n\nCREATE TABLE users (id bigint PRIMARY KEY);\nINSERT INTO users VALUES (1);\n\ncommit -- done\n";
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    write_files(
        &project.dir.join("source"),
        &files(&[
            ("1_users.up.sql", wrapped.into()),
            (
                "1_users.down.sql",
                "BEGIN TRANSACTION;\nDROP TABLE users;\nEND;\n".into(),
            ),
            ("2_posts.up.sql", "CREATE TABLE posts (id bigint);\n".into()),
        ]),
    );
    let import = ["import", "--from", "golang-migrate", "source"];
    let run = project.run(&db, &import).success();
    assert!(
        run.stderr.contains("1_users.up.sql") && run.stderr.contains("BEGIN"),
        "the output says what was cut: {}",
        run.stderr
    );
    // Exactly the two statements cut, every other byte kept.
    assert_eq!(
        up_sql(&project, "1"),
        "-- users, as the tutorial writes them\n\n\nCREATE TABLE users (id bigint PRIMARY KEY);\nINSERT INTO users VALUES (1);\n\n -- done\n"
    );
    let first = manifest(&project, "1");
    assert!(
        first.contains("transaction = \"per-migration\"")
            && first.contains("imported_from = \"golang-migrate 1_users.up.sql")
            && first.contains("COMMIT"),
        "{first}"
    );
    // Importing again keeps it, deterministically; the JSON says what it is.
    let again = project
        .run(&db, &[&import[..], &["--json"]].concat())
        .success();
    let one = json_revision(&again, "1");
    assert_eq!(
        (one["new"].as_bool(), one["transaction"].as_str()),
        (Some(false), Some("per-migration")),
        "{one}"
    );
    project.run(&db, &["up"]).success();
    project.run(&db, &["down", "base"]).success();
    assert!(!db.table_exists("users").await);

    // Adopted where golang-migrate applied the first.
    let adopted = TestDb::new(Backend::Postgres, &project).await;
    adopted
        .exec(&format!(
            "{}CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL);
             INSERT INTO schema_migrations VALUES (1, false);",
            wrapped.replace("commit -- done", "COMMIT;")
        ))
        .await;
    project
        .run(&adopted, &[&import[..], &["--adopt"]].concat())
        .success();
    assert_eq!(adopted.heads().await, ["1"]);
    project.run(&adopted, &["up"]).success();
    adopted.drop_db().await;

    // goose with NO TRANSACTION around its own BEGIN/COMMIT: one transaction too.
    let goose = TestProject::new();
    write_files(
        &goose.dir.join("source"),
        &files(&[(
            "00001_a.sql",
            "-- +goose NO TRANSACTION\n-- +goose Up\nBEGIN;\nCREATE TABLE a (x int);\nCREATE TABLE b (x int);\nCOMMIT;\n-- +goose Down\nDROP TABLE b;\nDROP TABLE a;\n".into(),
        )]),
    );
    goose
        .run(&db, &["import", "--from", "goose", "source"])
        .success();
    // The up script runs in one transaction; goose runs the down statements one by one.
    let a = manifest(&goose, "1");
    assert!(
        a.contains("transaction = \"per-migration\"")
            && a.contains("downgrade_transaction = \"none\""),
        "{a}"
    );
    goose.run(&db, &["up"]).success();
    db.drop_db().await;
}

#[tokio::test]
async fn transaction_control_other_than_one_plain_block_is_refused_naming_the_file() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    for (name, text, what) in [
        (
            "1_iso.up.sql",
            "BEGIN ISOLATION LEVEL SERIALIZABLE;\nCREATE TABLE t (x int);\nCOMMIT;\n",
            "BEGIN ISOLATION LEVEL SERIALIZABLE",
        ),
        (
            "1_two.up.sql",
            "BEGIN;\nCREATE TABLE t (x int);\nCOMMIT;\nBEGIN;\nCREATE TABLE u (x int);\nCOMMIT;\n",
            "statement 3 of 6",
        ),
        (
            "1_rollback.up.sql",
            "BEGIN;\nCREATE TABLE t (x int);\nROLLBACK;\n",
            "ROLLBACK",
        ),
    ] {
        let source = project.dir.join(format!("source-{name}"));
        write_files(&source, &files(&[(name, text.into())]));
        let refused = project
            .run(
                &db,
                &[
                    "import",
                    "--from",
                    "golang-migrate",
                    source.to_str().unwrap(),
                ],
            )
            .fails_with(CONFIG);
        assert!(
            refused.stderr.contains(name) && refused.stderr.contains(what),
            "{name}: {}",
            refused.stderr
        );
    }
    db.drop_db().await;
}

#[tokio::test]
async fn a_semicolon_in_a_literal_leaves_a_golang_migrate_file_in_one_transaction() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    write_files(
        &project.dir.join("source"),
        &files(&[(
            "1_tips.up.sql",
            "CREATE TABLE tips (t text);\nINSERT INTO tips VALUES ('Nightly job; vacuum runs at 3am');\nINSERT INTO missing VALUES (1);\n".into(),
        )]),
    );
    project
        .run(&db, &["import", "--from", "golang-migrate", "source"])
        .success();
    let m = manifest(&project, "1");
    assert!(!m.contains("transaction = \"none\""), "{m}");
    // golang-migrate sends the file as one query: PostgreSQL runs it in one implicit
    // transaction, and so does wasmig: the failing INSERT leaves nothing behind.
    project.run(&db, &["up"]).fails_with(6);
    assert!(!db.table_exists("tips").await);
    db.drop_db().await;
}

#[tokio::test]
async fn duplicate_or_null_versions_in_a_history_table_are_refused() {
    let project = TestProject::new();
    write_files(
        &project.dir.join("source"),
        &files(&[
            ("00000000000000_setup/up.sql", "SELECT 1;\n".into()),
            ("2020-01-01-000000_a/up.sql", "SELECT 2;\n".into()),
        ]),
    );
    for (rows, what) in [
        ("('00000000000000'), ('00000000000000')", "00000000000000"),
        ("('00000000000000'), (NULL), ('20200101000000')", "version"),
    ] {
        let db = TestDb::new(Backend::Postgres, &project).await;
        // Without its primary key, as a hand-made or restored table may be.
        db.exec(&format!(
            "CREATE TABLE __diesel_schema_migrations (version VARCHAR(50), run_on TIMESTAMP NOT NULL DEFAULT now());
             INSERT INTO __diesel_schema_migrations (version) VALUES {rows};"
        ))
        .await;
        let refused = project
            .run(&db, &["import", "--from", "diesel", "source", "--adopt"])
            .fails_with(CONFIG);
        assert!(
            refused.stderr.contains("__diesel_schema_migrations") && refused.stderr.contains(what),
            "{}",
            refused.stderr
        );
        assert!(!db.table_exists("wasmig_history").await);
        db.drop_db().await;
    }
}

#[tokio::test]
async fn files_the_tool_does_not_read_are_not_read() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    let outside = project.dir.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.sql"), "SELECT 'secret';\n").unwrap();
    // Beside each tool's migrations, and in a directory the tool does not look into: a dump
    // too large to read, a FIFO, a link to a directory outside, none of which it reads.
    let junk = |dir: &Path, sub: &str| {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        for at in [dir.to_path_buf(), dir.join(sub)] {
            std::fs::File::create(at.join("dump.bin"))
                .unwrap()
                .set_len(70 << 20)
                .unwrap();
            let status = std::process::Command::new("mkfifo")
                .arg(at.join("pipe"))
                .status()
                .unwrap();
            assert!(status.success());
            std::os::unix::fs::symlink(&outside, at.join("elsewhere")).unwrap();
        }
    };
    for (format, name) in [
        ("sqlx", "1_a.sql"),
        ("golang-migrate", "1_a.up.sql"),
        ("dbmate", "1_a.sql"),
        ("goose", "1_a.sql"),
        ("flyway", "V1__a.sql"),
        ("refinery", "V1__a.sql"),
        ("diesel", "1_a/up.sql"),
    ] {
        let source = project.dir.join(format!("source-{format}"));
        let text = match format {
            "dbmate" => "-- migrate:up\nSELECT 1;\n-- migrate:down\n",
            "goose" => "-- +goose Up\nSELECT 1;\n",
            _ => "SELECT 1;\n",
        };
        write_files(&source, &files(&[(name, text.into())]));
        // Diesel takes every directory not starting with `.` for a migration.
        junk(&source, if format == "diesel" { ".docs" } else { "docs" });
        project
            .run(
                &db,
                &[
                    "import",
                    "--from",
                    format,
                    source.to_str().unwrap(),
                    "--dry-run",
                ],
            )
            .success();
    }
    // A migration file the tool reads that links outside is refused, in the source
    // directory's words.
    let source = project.dir.join("source-linked");
    write_files(&source, &files(&[("1_a.sql", "SELECT 1;\n".into())]));
    std::os::unix::fs::symlink(outside.join("secret.sql"), source.join("2_b.sql")).unwrap();
    let refused = project
        .run(&db, &["import", "--from", "sqlx", source.to_str().unwrap()])
        .fails_with(CONFIG);
    assert!(
        refused.stderr.contains("2_b.sql")
            && refused.stderr.contains("outside the source directory")
            && !refused.stderr.contains("the project"),
        "{}",
        refused.stderr
    );
    db.drop_db().await;
}

/// A migration whose one direction is wrapped in BEGIN ... COMMIT (cut, so it runs in a
/// transaction) and whose other direction must run outside one keeps both: the up script
/// statement by statement (`CREATE INDEX CONCURRENTLY` fails in a transaction), the down
/// script in one transaction, which a failure part-way rolls back whole, as golang-migrate
/// ran it (before, such a migration was refused at import).
#[tokio::test]
async fn a_wrapped_direction_beside_one_that_refuses_a_transaction_keeps_both_modes() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    write_files(
        &project.dir.join("source"),
        &files(&[
            ("1_t.up.sql", "CREATE TABLE t (x int);\n".into()),
            ("1_t.down.sql", "DROP TABLE t;\n".into()),
            (
                "2_idx.up.sql",
                "CREATE INDEX CONCURRENTLY ti ON t (x);\n".into(),
            ),
            (
                "2_idx.down.sql",
                "BEGIN;\nDROP INDEX ti;\nSELECT 1/0;\nCOMMIT;\n".into(),
            ),
        ]),
    );
    project
        .run(&db, &["import", "--from", "golang-migrate", "source"])
        .success();
    let idx = manifest(&project, "2");
    assert!(
        idx.contains("transaction = \"none\"")
            && idx.contains("downgrade_transaction = \"per-migration\""),
        "{idx}"
    );
    project.run(&db, &["up"]).success();
    let index = "SELECT indexname FROM pg_indexes WHERE indexname = 'ti'";
    assert_eq!(db.strings(index).await, ["ti"]);
    // The down script fails at its second statement: its DROP INDEX is rolled back with it,
    // the revision stays applied and nothing is marked failed.
    project.run(&db, &["down", "-1"]).fails_with(6);
    assert_eq!(db.strings(index).await, ["ti"], "the DROP INDEX was kept");
    assert!(db.failed_marks().await.is_empty());
    assert_eq!(db.heads().await, ["2"]);
    db.drop_db().await;
}

/// dbmate runs each block as its own directive says: `transaction:false` on the up block
/// only leaves the down block in a transaction. The real dbmate on one database and wasmig
/// after import on another end the same way when that down block fails part-way: the index
/// it dropped first is still there, under both.
#[tokio::test]
async fn dbmates_per_block_transaction_setting_is_kept_per_direction() {
    let project = TestProject::new();
    let source = project.dir.join("source");
    write_files(
        &source,
        &files(&[
            (
                "20200101000001_t.sql",
                "-- migrate:up\nCREATE TABLE t (x int);\n-- migrate:down\nDROP TABLE t;\n".into(),
            ),
            (
                "20200101000002_idx.sql",
                "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY ti ON t (x);\n\n-- migrate:down\nDROP INDEX ti;\nSELECT 1/0;\n"
                    .into(),
            ),
        ]),
    );
    let index = "SELECT indexname FROM pg_indexes WHERE indexname = 'ti'";

    let by_dbmate = TestDb::new(Backend::Postgres, &project).await;
    let run_dbmate = |command: &str| {
        dbmate()
            .args(["--url", &format!("{}?sslmode=disable", by_dbmate.url)])
            .args(["--migrations-dir", source.to_str().unwrap()])
            .args(["--no-dump-schema", command])
            .output()
            .expect("dbmate must be installed for this test: npm install -g dbmate@2.36.0 (or set DBMATE)")
    };
    let up = run_dbmate("up");
    assert!(up.status.success(), "dbmate up: {up:?}");
    let down = run_dbmate("down");
    assert!(!down.status.success(), "dbmate down should fail: {down:?}");
    assert_eq!(
        by_dbmate.strings(index).await,
        ["ti"],
        "dbmate kept its DROP INDEX"
    );

    let db = TestDb::new(Backend::Postgres, &project).await;
    project
        .run(&db, &["import", "--from", "dbmate", "source"])
        .success();
    let idx = manifest(&project, "20200101000002");
    assert!(
        idx.contains("transaction = \"none\"")
            && idx.contains("downgrade_transaction = \"per-migration\""),
        "{idx}"
    );
    project.run(&db, &["up"]).success();
    project.run(&db, &["down", "-1"]).fails_with(6);
    assert_eq!(
        db.strings(index).await,
        ["ti"],
        "wasmig kept its DROP INDEX"
    );
    assert!(db.failed_marks().await.is_empty());
    assert_eq!(db.heads().await, ["20200101000002"]);
    by_dbmate.drop_db().await;
    db.drop_db().await;
}

/// golang-migrate run with its driver's `x-multi-statement=true` sends each statement of a
/// file on its own, autocommitted: a file mixing `CREATE INDEX CONCURRENTLY` with other
/// statements works there, and is imported as `none` with `--x-multi-statement` (without
/// it, the file is one query: one transaction, where the index fails, under both tools).
/// A file it would cut inside a string is refused, naming the file, with nothing written;
/// the option is golang-migrate's alone.
#[tokio::test]
async fn golang_migrates_x_multi_statement_option_runs_each_statement_alone() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    let source = project.dir.join("source");
    write_files(
        &source,
        &files(&[
            (
                "1_t.up.sql",
                "CREATE TABLE t (x int);\nINSERT INTO t VALUES (1);\nCREATE INDEX CONCURRENTLY ti ON t (x);\n"
                    .into(),
            ),
            ("1_t.down.sql", "DROP TABLE t;\n".into()),
        ]),
    );
    let plain = project
        .run(
            &db,
            &[
                "import",
                "--from",
                "golang-migrate",
                "source",
                "--dry-run",
                "--json",
            ],
        )
        .success();
    assert_eq!(plain.json()["revisions"][0]["transaction"], "per-migration");
    project
        .run(
            &db,
            &[
                "import",
                "--from",
                "golang-migrate",
                "source",
                "--x-multi-statement",
            ],
        )
        .success();
    let t = manifest(&project, "1");
    assert!(t.contains("transaction = \"none\""), "{t}");
    // The down file's one statement: in a transaction, the same thing for one statement.
    assert!(
        t.contains("downgrade_transaction = \"per-migration\""),
        "{t}"
    );
    project.run(&db, &["up"]).success();
    assert_eq!(
        db.strings("SELECT indexname FROM pg_indexes WHERE indexname = 'ti'")
            .await,
        ["ti"]
    );

    let cut = TestProject::new();
    write_files(
        &cut.dir.join("source"),
        &files(&[(
            "1_tips.up.sql",
            "CREATE TABLE tips (t text);\nINSERT INTO tips VALUES ('vacuum; then analyze');\n"
                .into(),
        )]),
    );
    let refused = cut
        .run(
            &db,
            &[
                "import",
                "--from",
                "golang-migrate",
                "source",
                "--x-multi-statement",
            ],
        )
        .fails_with(CONFIG);
    assert!(
        refused.stderr.contains("1_tips.up.sql")
            && refused.stderr.contains("cuts a file after every `;`"),
        "{}",
        refused.stderr
    );
    assert!(
        !cut.dir
            .join("versions")
            .read_dir()
            .is_ok_and(|mut d| d.any(|e| e.unwrap().path().join("migration.toml").exists()))
    );
    let other = cut
        .run(
            &db,
            &[
                "import",
                "--from",
                "dbmate",
                "source",
                "--x-multi-statement",
            ],
        )
        .fails_with(CONFIG);
    assert!(
        other.stderr.contains("golang-migrate's option"),
        "{}",
        other.stderr
    );
    db.drop_db().await;
}

/// golang-migrate sends a file of one statement as one query, outside a transaction block,
/// where a procedure or a `DO` block may `COMMIT` inside: such a file is imported as
/// `none` and runs (in a transaction PostgreSQL refuses the `COMMIT`, 2D000, which is what
/// wasmig did before). A file of several statements stays one transaction, as the tool
/// runs it.
#[tokio::test]
async fn a_procedure_or_do_block_committing_inside_runs_as_the_tool_ran_it() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    write_files(
        &project.dir.join("source"),
        &files(&[
            (
                "1_batches.up.sql",
                "CREATE TABLE t (x int);\nCREATE PROCEDURE fill() LANGUAGE plpgsql AS $$\nBEGIN\n  INSERT INTO t VALUES (1);\n  COMMIT;\n  INSERT INTO t VALUES (2);\nEND\n$$;\n"
                    .into(),
            ),
            ("2_fill.up.sql", "CALL fill();\n".into()),
            (
                "3_more.up.sql",
                "DO $body$\nBEGIN\n  INSERT INTO t VALUES (3);\n  COMMIT;\n  INSERT INTO t VALUES (4);\nEND\n$body$;\n"
                    .into(),
            ),
        ]),
    );
    project
        .run(&db, &["import", "--from", "golang-migrate", "source"])
        .success();
    assert!(manifest(&project, "1").contains("transaction = \"per-migration\""));
    for id in ["2", "3"] {
        let m = manifest(&project, id);
        assert!(m.contains("transaction = \"none\""), "{m}");
    }
    project.run(&db, &["up"]).success();
    assert_eq!(
        db.strings("SELECT string_agg(x::text, ',' ORDER BY x) FROM t")
            .await,
        ["1,2,3,4"]
    );
    db.drop_db().await;
}

/// Diesel, sqlx, dbmate and refinery send a migration without a transaction as one query,
/// which PostgreSQL runs in one implicit transaction when it holds several statements: a
/// failure part-way leaves nothing, under the tool and under wasmig (per-migration, not
/// `none`). A file of one statement that refuses a block stays `none`.
#[tokio::test]
async fn a_tools_no_transaction_file_of_several_statements_stays_atomic() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    let source = project.dir.join("source");
    write_files(
        &source,
        &files(&[
            (
                "2020-01-01-000000_a/up.sql",
                "CREATE TABLE a (x int);\nINSERT INTO a VALUES (1/0);\n".into(),
            ),
            ("2020-01-01-000000_a/down.sql", "DROP TABLE a;\n".into()),
            (
                "2020-01-01-000000_a/metadata.toml",
                "run_in_transaction = false\n".into(),
            ),
            (
                "2020-01-02-000000_b/up.sql",
                "CREATE INDEX CONCURRENTLY ai ON a (x);\n".into(),
            ),
            ("2020-01-02-000000_b/down.sql", "DROP INDEX ai;\n".into()),
            (
                "2020-01-02-000000_b/metadata.toml",
                "run_in_transaction = false\n".into(),
            ),
        ]),
    );
    project
        .run(&db, &["import", "--from", "diesel", "source"])
        .success();
    let a = manifest(&project, "20200101000000");
    assert!(a.contains("transaction = \"per-migration\""), "{a}");
    let b = manifest(&project, "20200102000000");
    assert!(b.contains("transaction = \"none\""), "{b}");
    project.run(&db, &["up"]).fails_with(6);
    assert!(
        !db.table_exists("a").await,
        "the failed migration left its table"
    );
    assert!(db.failed_marks().await.is_empty());
    db.drop_db().await;
}

/// goose ends a statement at any line ending in `;`, inside a string too, and sends the
/// piece alone, where PostgreSQL cannot read it: refused, naming the file, rather than
/// joined back into something goose never ran.
#[tokio::test]
async fn a_goose_statement_split_inside_a_string_is_refused() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    write_files(
        &project.dir.join("source"),
        &files(&[(
            "1_t.sql",
            "-- +goose Up\nCREATE TABLE t (x text);\nINSERT INTO t VALUES ('line one;\nline two');\n-- +goose Down\nDROP TABLE t;\n".into(),
        )]),
    );
    let run = project
        .run(&db, &["import", "--from", "goose", "source"])
        .fails_with(3);
    assert!(
        run.stderr.contains("1_t.sql") && run.stderr.contains("StatementBegin"),
        "{}",
        run.stderr
    );
    db.drop_db().await;
}

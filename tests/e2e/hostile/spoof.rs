//! wasmig's own statements are immune to the migration's session: a migration that puts a
//! schema of look-alike functions and operators (`txid_current`, `unnest`, `=`, `<>` on
//! text) first in its `search_path` must not change what wasmig checks or records in the
//! same transaction.

use crate::support::{Backend, TestDb, TestProject};

/// Look-alikes that would make wasmig's record delete every head and insert a forged one,
/// and its transaction guard see the transaction it began, put first in the search path.
const SPOOF: &str = "
    CREATE SCHEMA evil;
    CREATE FUNCTION evil.always(text, text) RETURNS boolean LANGUAGE sql AS 'SELECT true';
    CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.always);
    CREATE OPERATOR evil.<> (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.always);
    CREATE FUNCTION evil.unnest(text[]) RETURNS SETOF text LANGUAGE sql AS $$ SELECT 'forged' $$;
    CREATE FUNCTION evil.txid_current() RETURNS bigint LANGUAGE sql AS 'SELECT 0::bigint';
    SET search_path = evil, pg_catalog, public;
";

#[tokio::test]
async fn look_alike_functions_and_operators_do_not_change_what_wasmig_records() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    project.sql_revision("b2", "SELECT 1;", "SELECT 1;");
    // A second branch from a1, whose revision spoofs: the heads are b2 and c3 after it.
    let c3 = project
        .run_plain(&[
            "revision", "-m", "spoof", "--rev-id", "c3", "--head", "a1", "--splice",
        ])
        .success();
    assert_eq!(c3.code, 0);
    let dir = std::fs::read_dir(project.dir.join("versions"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("-c3_"))
        .unwrap();
    std::fs::write(dir.join("up.sql"), SPOOF).unwrap();
    std::fs::write(dir.join("down.sql"), "DROP SCHEMA evil CASCADE;").unwrap();

    project.run(&db, &["up", "b2"]).success();
    project.run(&db, &["up", "c3"]).success();
    let mut heads = db.heads().await;
    heads.sort();
    assert_eq!(heads, ["b2", "c3"], "nothing deleted, nothing forged");
    assert_eq!(
        db.history().await,
        ["upgrade:a1", "upgrade:b2", "upgrade:c3"]
    );
    // And back down, past the spoofing revision.
    project.run(&db, &["down", "a1"]).success();
    assert_eq!(db.heads().await, ["a1"]);
    db.drop_db().await;
}

/// Replaces every statement under sqlx's names (`sqlx_s_N`, where wasmig keeps the record
/// of a step prepared from one step to the next) with one of the same parameters that
/// writes nothing and answers as a record that succeeded would: its heads, one history
/// row, one artifact, every check passed.
const FORGED_RECORD: &str = "
    DO $$
    DECLARE s record;
    BEGIN
        FOR s IN SELECT name, parameter_types FROM pg_prepared_statements
                 WHERE name LIKE 'sqlx\\_s\\_%'
        LOOP
            EXECUTE format('DEALLOCATE %I', s.name);
            EXECUTE format(
                'PREPARE %I(%s) AS SELECT pg_catalog.cardinality($2)::int8, 1::int8, 1::int8, '
                '(SELECT pg_catalog.string_agg(revision, '', '' ORDER BY revision) FROM public.wasmig_version), '
                '(SELECT pg_catalog.count(*) FROM public.wasmig_history), 1::int8, 7::int8',
                s.name, pg_catalog.array_to_string(s.parameter_types::text[], ', '));
        END LOOP;
    END $$;
    INSERT INTO t VALUES (1);
";

/// A migration cannot answer for wasmig's record of its step by replacing the statement
/// wasmig keeps prepared (`DEALLOCATE`, then `PREPARE` under the same name, from a `DO`
/// block): before the record, the server says a statement under sqlx's names was made by
/// SQL, and the record goes inline. Without that check, the step's work committed with no
/// record, and the next `up` ran it again.
#[tokio::test]
async fn a_statement_prepared_in_place_of_wasmigs_record_does_not_answer_for_it() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    project.sql_revision("b2", FORGED_RECORD, "DELETE FROM t;");
    project.sql_revision("c3", "SELECT 1;", "SELECT 1;");
    project.run(&db, &["up"]).success();
    assert_eq!(db.heads().await, ["c3"]);
    assert_eq!(
        db.history().await,
        ["upgrade:a1", "upgrade:b2", "upgrade:c3"]
    );
    assert_eq!(
        db.count("SELECT count(*) FROM wasmig_artifact").await,
        3,
        "every step stored its SQL"
    );
    project.run(&db, &["up"]).success();
    assert_eq!(db.count("SELECT count(*) FROM t").await, 1, "b2 ran once");
    db.drop_db().await;
}

/// A migration that only deallocates the statements wasmig keeps prepared does not fail
/// its step: the server's count of them falls short of sqlx's, and the record goes inline.
#[tokio::test]
async fn a_deallocated_record_statement_is_prepared_again_not_a_failure() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    project.sql_revision(
        "b2",
        "DEALLOCATE ALL; INSERT INTO t VALUES (1);",
        "DELETE FROM t;",
    );
    project.sql_revision(
        "c3",
        "INSERT INTO t VALUES (2);",
        "DELETE FROM t WHERE x = 2;",
    );
    project.run(&db, &["up"]).success();
    assert_eq!(db.heads().await, ["c3"]);
    assert_eq!(db.count("SELECT count(*) FROM t").await, 2);
    db.drop_db().await;
}

/// The record of a step is parsed and planned once a run, not once a step: the third step
/// of a run finds one statement of wasmig's prepared on its session, already run by the
/// two steps before (the server's count of its executions by a generic plan).
#[tokio::test]
async fn the_record_of_a_step_is_prepared_once_a_run() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    project.sql_revision("b2", "INSERT INTO t VALUES (1);", "DELETE FROM t;");
    project.sql_revision(
        "c3",
        "CREATE TABLE seen AS SELECT pg_catalog.count(*) AS statements, \
             pg_catalog.max(generic_plans) AS executions \
         FROM pg_prepared_statements WHERE statement LIKE 'WITH guard%';",
        "DROP TABLE seen;",
    );
    project.run(&db, &["up"]).success();
    assert_eq!(db.count("SELECT statements FROM seen").await, 1);
    assert_eq!(db.count("SELECT executions FROM seen").await, 2);
    db.drop_db().await;
}

/// The record's values are bound as the server reads them in UTF-8 whatever
/// `client_encoding` the migration set: the stored copy of a script that set LATIN1 is the
/// file's bytes, not their LATIN1 reading.
#[tokio::test]
async fn a_migrations_client_encoding_does_not_change_what_wasmig_records() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    let up = "DO $$ BEGIN PERFORM pg_catalog.set_config('client_encoding', 'LATIN1', false); END $$;\n\
              CREATE TABLE t (x int); -- café ☕\n";
    project.sql_revision("a1", "CREATE TABLE s (x int);", "DROP TABLE s;");
    project.sql_revision("b2", up, "DROP TABLE t; -- café ☕");
    project.run(&db, &["up"]).success();
    assert_eq!(
        db.strings("SELECT up_sql FROM wasmig_artifact WHERE revision = 'b2'")
            .await,
        [up]
    );
    project.run(&db, &["down", "a1"]).success();
    assert!(!db.table_exists("t").await);
    db.drop_db().await;
}

/// A script that ends inside a string, a quoted name, a comment or a dollar quote cannot
/// take in the statements wasmig sends after it in the same message (what the step's
/// record needs first: its limits, its savepoint, the server's word on the statements
/// prepared on the session): PostgreSQL's parser refuses it before anything is sent (the
/// server's own reading of such a message is tested in the backend's tests), the step
/// fails, and nothing of it runs or is recorded. A script that ends in a `--` comment with
/// no line break, or without its last `;`, runs and is recorded.
#[tokio::test]
async fn a_script_left_open_cannot_take_in_what_wasmig_sends_after_it() {
    const MIGRATION_FAILED: i32 = 6;
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    let b2 = project.sql_revision("b2", "SELECT 1;", "SELECT 1;");
    project.run(&db, &["up", "a1"]).success();
    let open = [
        ("'", "unterminated quoted string"),
        ("E'\\", "unterminated quoted string"),
        ("U&'", "unterminated quoted string"),
        ("\"", "unterminated quoted identifier"),
        ("/*", "unterminated /* comment"),
        ("/* /* */", "unterminated /* comment"),
        ("$$", "unterminated dollar-quoted string"),
        ("$q$ ' $$", "unterminated dollar-quoted string"),
        // An odd quote then ours: what follows our last quote is left open.
        ("' ' '", "unterminated quoted string"),
    ];
    // And a large script (judged a statement at a time) ending open.
    let large = "SELECT 1;\n".repeat(30_000);
    let open = open
        .map(|(end, error)| (end.to_owned(), error))
        .into_iter()
        .chain([(
            format!("1;\n{large}SELECT 'open"),
            "unterminated quoted string",
        )]);
    for (end, error) in open {
        let script = format!("INSERT INTO t VALUES (1);\nSELECT {end}");
        std::fs::write(b2.join("up.sql"), &script).unwrap();
        let run = project.run(&db, &["up"]).fails_with(MIGRATION_FAILED);
        assert!(run.stderr.contains(error), "{end}: {}", run.stderr);
        assert_eq!(db.heads().await, ["a1"], "{end}");
        assert_eq!(db.history().await, ["upgrade:a1"], "{end}");
        assert_eq!(db.count("SELECT count(*) FROM t").await, 0, "{end}");
    }
    // Each runs, recorded: the second after the first was taken down (its rows stay).
    for (rows, end) in [(1, "SELECT 1 -- the end, no line break"), (2, "SELECT 1")] {
        std::fs::write(
            b2.join("up.sql"),
            format!("INSERT INTO t VALUES (1);\n{end}"),
        )
        .unwrap();
        project.run(&db, &["up"]).success();
        assert_eq!(db.heads().await, ["b2"], "{end}");
        assert_eq!(db.count("SELECT count(*) FROM t").await, rows, "{end}");
        project.run(&db, &["down", "a1"]).success();
    }
    db.drop_db().await;
}

/// SQLSTATEs the server gives when it ends a session (57P01 shutting down or terminated,
/// 25P03 an idle transaction's timeout) or a connection fails (class 08), which any SQL
/// can raise too.
const LOST_CONNECTION_CODES: [&str; 3] = ["57P01", "25P03", "08006"];

/// A project on a fresh PostgreSQL database with `a1`, which creates `kept`, and `b2`,
/// which creates `lost` and then runs `then` (its down drops `lost`); and `b2`'s directory.
async fn kept_then_lost(then: &str) -> (TestProject, TestDb, std::path::PathBuf) {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision("a1", "CREATE TABLE kept (x int);", "DROP TABLE kept;");
    let b2 = project.sql_revision(
        "b2",
        &format!("CREATE TABLE lost (x int);\n{then}"),
        "DROP TABLE lost;",
    );
    (project, db, b2)
}

/// A `DO` block raising `code` as an error (severity `ERROR`: the session goes on).
fn raise_as(code: &str) -> String {
    format!(
        "DO $$ BEGIN RAISE EXCEPTION 'raised by the migration' USING ERRCODE = '{code}'; END $$;"
    )
}

/// A migration raising the code of a lost connection is a failed migration (exit 6), not
/// a lost connection (exit 5, which names the database server as the problem and which a
/// CI job may retry): in a SQL revision, in a `none` script (marked failed as any failed
/// statement), and under a guest, which can also handle it in a savepoint and go on.
#[tokio::test]
async fn an_error_raised_with_a_lost_connections_code_is_the_migrations_own() {
    for code in LOST_CONNECTION_CODES {
        for none in [false, true] {
            let (project, db, b2) = kept_then_lost(&raise_as(code)).await;
            if none {
                crate::support::no_transaction(&b2);
            }
            let run = project.run(&db, &["up"]).fails_with(6);
            assert!(
                run.stderr.contains(&format!("(code {code})"))
                    && !run.stderr.contains("connection failed"),
                "{code} none={none}: {}",
                run.stderr
            );
            assert_eq!(db.heads().await, ["a1"], "{code} none={none}");
            if none {
                // The first statement committed; the revision is marked failed.
                assert_eq!(db.failed_marks().await, ["b2"], "{code}");
            } else {
                assert!(!db.table_exists("lost").await, "{code}");
            }
            db.drop_db().await;
        }
    }
}

/// The same raised under a guest, by a trigger on the table it inserts into: unhandled,
/// the migration's failure; handled in a savepoint, the guest goes on and the revision
/// is applied.
#[tokio::test]
async fn a_guest_sees_a_raised_lost_connection_code_as_an_error_it_can_handle() {
    for (mode, code) in [("unhandled-sql", 6), ("savepoint", 0)] {
        let project = TestProject::new();
        let db = TestDb::new(Backend::Postgres, &project).await;
        db.exec(&format!(
            "CREATE TABLE e2e_mode (mode text); INSERT INTO e2e_mode VALUES ('{mode}');
             CREATE TABLE no_such_table (x int);
             CREATE FUNCTION fake_end() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN RAISE EXCEPTION 'terminating connection, or so it says'
                 USING ERRCODE = '57P01'; END $$;
             CREATE TRIGGER fake_end BEFORE INSERT ON no_such_table
               FOR EACH ROW EXECUTE FUNCTION fake_end();"
        ))
        .await;
        project.sql_revision("a1", "CREATE TABLE kept (x int);", "DROP TABLE kept;");
        project.wasm_revision("b2", std::path::Path::new(crate::test_guest::SCENARIO));
        let run = project.run(&db, &["up"]);
        assert_eq!(run.code, code, "{mode}: {run:?}");
        assert!(!run.stderr.contains("connection failed"), "{mode}: {run:?}");
        if code == 0 {
            assert_eq!(db.heads().await, ["b2"], "{mode}");
            assert!(run.stderr.contains("57P01"), "{mode}: {run:?}");
        } else {
            assert!(run.stderr.contains("sql error 57P01"), "{mode}: {run:?}");
            assert_eq!(db.heads().await, ["a1"], "{mode}");
            assert!(!db.table_exists("scenario_marker").await, "{mode}");
        }
        db.drop_db().await;
    }
}

/// A migration that makes its transaction read-only stops wasmig's record of it: its own
/// failure (exit 6, saying why), rolled back, not a database error; per step and under
/// `--atomic`, set by `SET LOCAL` or by `set_config`; and a dry run says so too.
#[tokio::test]
async fn a_migration_leaving_its_transaction_read_only_fails_as_its_own() {
    for setting in [
        "SET LOCAL transaction_read_only = on;",
        "SELECT pg_catalog.set_config('transaction_read_only', 'on', true);",
    ] {
        for args in [&["up"][..], &["up", "--atomic"], &["up", "--dry-run"]] {
            let (project, db, _) = kept_then_lost(setting).await;
            let run = project.run(&db, args).fails_with(6);
            assert!(
                run.stderr.contains("left its transaction read-only"),
                "{setting} {args:?}: {}",
                run.stderr
            );
            assert!(!db.table_exists("lost").await, "{setting} {args:?}");
            // A dry run fails as the real run would, and keeps nothing.
            let kept: &[&str] = if args.len() == 1 { &["a1"] } else { &[] };
            assert_eq!(db.heads().await, kept, "{setting} {args:?}");
            db.drop_db().await;
        }
    }
}

/// `COPY` to or from the client in a migration's SQL is refused before it runs (the client
/// is wasmig): the migration's failure (exit 6, naming the statement), not a connection
/// lost in copy mode; in a transaction and in a `none` script.
#[tokio::test]
async fn copy_to_or_from_the_client_is_refused_as_the_migrations() {
    for (copy, named) in [
        ("COPY kept TO STDOUT;", "COPY ... TO STDOUT"),
        (
            "COPY kept (x) FROM stdin WITH (FORMAT csv);",
            "COPY ... FROM STDIN",
        ),
        ("COPY (SELECT 1) TO STDOUT;", "COPY ... TO STDOUT"),
    ] {
        for none in [false, true] {
            let (project, db, b2) = kept_then_lost(copy).await;
            if none {
                crate::support::no_transaction(&b2);
            }
            let run = project.run(&db, &["up"]).fails_with(6);
            assert!(
                run.stderr.contains(&format!(
                    "`{named}` (statement 2 of the script) is not allowed"
                )),
                "{copy} none={none}: {}",
                run.stderr
            );
            assert_eq!(db.heads().await, ["a1"], "{copy} none={none}");
            // Refused before anything of the script ran.
            assert!(!db.table_exists("lost").await, "{copy} none={none}");
            assert!(db.failed_marks().await.is_empty(), "{copy} none={none}");
            db.drop_db().await;
        }
    }
}

/// `exit_on_error` set by a trusted migration does not reach wasmig's own statements: a
/// record it stops (the transaction left read-only) is still the migration's failure,
/// not a session the server ended (exit 5 before).
#[tokio::test]
async fn exit_on_error_does_not_turn_wasmigs_own_errors_into_a_lost_connection() {
    let (project, db, _) =
        kept_then_lost("SET LOCAL exit_on_error = on;\nSET LOCAL transaction_read_only = on;")
            .await;
    let run = project.run(&db, &["up"]).fails_with(6);
    assert!(
        run.stderr.contains("left its transaction read-only"),
        "{}",
        run.stderr
    );
    assert_eq!(db.heads().await, ["a1"]);
    assert!(!db.table_exists("lost").await);
    db.drop_db().await;
}

/// A deferred trigger that makes the transaction read-only as it fires, at COMMIT, comes
/// after a real run's record, which it cannot stop: the dry run, which fires it early,
/// passes too, as the real run does.
#[tokio::test]
async fn a_dry_run_passes_what_a_deferred_trigger_makes_read_only_after_the_record() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision(
        "a1",
        "CREATE TABLE dt (x int);
         CREATE FUNCTION ro() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN SET LOCAL transaction_read_only = on; RETURN NULL; END $$;
         CREATE CONSTRAINT TRIGGER ro AFTER INSERT ON dt DEFERRABLE INITIALLY DEFERRED
           FOR EACH ROW EXECUTE FUNCTION ro();
         INSERT INTO dt VALUES (1);",
        "DROP TABLE dt; DROP FUNCTION ro();",
    );
    let dry = project.run(&db, &["up", "--dry-run"]);
    assert_eq!(dry.code, 0, "{dry:?}");
    project.run(&db, &["up"]).success();
    assert_eq!(db.heads().await, ["a1"]);
    db.drop_db().await;
}

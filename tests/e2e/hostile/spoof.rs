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

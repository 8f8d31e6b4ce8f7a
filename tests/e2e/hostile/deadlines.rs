//! Deadlines that hold for SQL too: a SQL revision's `timeout_secs` stops a script that
//! would run for minutes (cancelled on PostgreSQL, interrupted on SQLite), exit 7, the
//! step rolled back and nothing recorded.

use crate::snap::{assert_run, shown};
use crate::support::{BOTH, Backend, TestDb, TestProject};

#[tokio::test]
async fn a_sql_revision_is_stopped_by_its_timeout_secs() {
    for backend in BOTH {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
        let slow = match backend {
            Backend::Postgres => "INSERT INTO t VALUES (1); SELECT pg_sleep(120);",
            // Counts for ever: only the interrupt stops it.
            Backend::Mysql => unreachable!("on MySQL: mysql.rs, and the suites over ALL"),
            Backend::Sqlite => {
                "INSERT INTO t VALUES (1);
                 WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c)
                 SELECT count(*) FROM c;"
            }
        };
        let dir = project.sql_revision("b2", slow, "SELECT 1;");
        project.set_manifest(&dir, "timeout_secs = 1");
        let run = project.run(&db, &["up"]).fails_with(7);
        assert_run!(
            "sql_revision_past_its_timeout",
            backend,
            shown(&run, &project, Some(&db))
        );
        assert_eq!(db.heads().await, ["a1"], "{backend:?}");
        assert_eq!(db.count("SELECT count(*) FROM t").await, 0, "{backend:?}");
        db.drop_db().await;
    }
}

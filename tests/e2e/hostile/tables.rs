//! wasmig's tables are the plain tables it created (PostgreSQL): a trigger, a rule,
//! row-level security or a view in a table's place, or anything that would run an
//! expression as wasmig writes (a check, a default, a domain, an index expression, a
//! cascading foreign key, a partition key), added by a migration or by anyone
//! else, is found before a run (nothing runs) or in the step's own transaction before it
//! records anything (the step is rolled back, the addition with it): exit 12, naming it.

use crate::snap::{assert_run, shown};
use crate::support::{Backend, TestDb, TestProject};

/// Installed by a migration: each is rolled back with the step that tried. With the name of
/// the snapshot of the run, which names what was found.
const IN_A_STEP: [(&str, &str); 6] = [
    (
        "CREATE FUNCTION erase() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN DELETE FROM wasmig_version WHERE revision = NEW.revision; RETURN NULL; END $$;
         CREATE TRIGGER erase AFTER INSERT ON wasmig_version FOR EACH ROW EXECUTE FUNCTION erase();",
        "step_adds_a_trigger",
    ),
    (
        "CREATE RULE hide AS ON INSERT TO wasmig_history DO INSTEAD NOTHING;",
        "step_adds_a_rule",
    ),
    (
        "ALTER TABLE wasmig_failed ENABLE ROW LEVEL SECURITY;",
        "step_enables_row_level_security",
    ),
    (
        "CREATE FUNCTION skip() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
         CREATE TRIGGER skip BEFORE INSERT ON wasmig_artifact FOR EACH ROW EXECUTE FUNCTION skip();",
        "step_adds_a_trigger_to_the_artifacts",
    ),
    (
        // A plain table in the place of the run's: its rows (the heads) left behind.
        "ALTER TABLE wasmig_version RENAME TO wasmig_version_old;
         CREATE TABLE wasmig_version (revision text PRIMARY KEY);",
        "step_replaces_the_version_table",
    ),
    (
        // A child table, whose rows every read of the parent includes: a forged head.
        "CREATE TABLE hidden_heads () INHERITS (wasmig_version);
         INSERT INTO hidden_heads VALUES ('c3');",
        "step_adds_a_child_table",
    ),
];

#[tokio::test]
async fn a_migration_that_alters_wasmigs_tables_is_rolled_back_and_not_recorded() {
    for (sql, name) in IN_A_STEP {
        let project = TestProject::new();
        let db = TestDb::new(Backend::Postgres, &project).await;
        project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
        project.sql_revision("b2", &format!("CREATE TABLE b (x int); {sql}"), "SELECT 1;");
        let run = project.run(&db, &["up"]).fails_with(12);
        assert_run!(name, shown(&run, &project, Some(&db)));
        assert_eq!(db.heads().await, ["a1"], "{name}");
        assert_eq!(db.history().await, ["upgrade:a1"], "{name}");
        assert!(!db.table_exists("b").await, "{name}: b2 rolled back");
        // Rolled back with the step: the next run is clean up to b2 again.
        project.run(&db, &["up", "a1"]).success();
        db.drop_db().await;
    }
}

#[tokio::test]
async fn tables_altered_between_runs_are_refused_before_anything_runs() {
    let variants = [
        (
            "CREATE FUNCTION erase() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
             CREATE TRIGGER erase BEFORE DELETE ON wasmig_version FOR EACH ROW EXECUTE FUNCTION erase();",
            "trigger_added_between_runs",
        ),
        (
            // A view in the table's place that always says b2 is applied.
            "ALTER TABLE wasmig_version RENAME TO wasmig_version_real;
             CREATE VIEW wasmig_version AS SELECT 'b2'::text AS revision;",
            "view_in_place_of_the_version_table",
        ),
    ];
    for (sql, name) in variants {
        let project = TestProject::new();
        let db = TestDb::new(Backend::Postgres, &project).await;
        project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
        project.run(&db, &["up"]).success();
        project.sql_revision("b2", "CREATE TABLE b (x int);", "DROP TABLE b;");
        db.exec(sql).await;
        let run = project.run(&db, &["up"]).fails_with(12);
        assert_run!(name, shown(&run, &project, Some(&db)));
        assert!(!db.table_exists("b").await, "{name}: nothing ran");
        let check = project.run(&db, &["check"]).fails_with(12);
        assert_run!(format!("{name}_check"), shown(&check, &project, Some(&db)));
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_deferred_trigger_that_rewrites_the_heads_at_commit_is_found_after_the_run() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    // The trigger belongs to the migration's own table, so the tamper check of wasmig's
    // tables has nothing to see; it fires at COMMIT, after wasmig wrote its record.
    project.sql_revision(
        "a1",
        "CREATE TABLE x (y int);
         CREATE FUNCTION forget() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN DELETE FROM wasmig_version; RETURN NULL; END $$;
         CREATE CONSTRAINT TRIGGER forget AFTER INSERT ON x
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION forget();
         INSERT INTO x VALUES (1);",
        "DROP TABLE x; DROP FUNCTION forget();",
    );
    let run = project.run(&db, &["up"]).fails_with(12);
    assert_run!(
        "deferred_trigger_rewrites_the_heads",
        shown(&run, &project, Some(&db))
    );
    assert!(db.heads().await.is_empty());
    db.drop_db().await;

    // Not the last step: the next one does not run on a version table it did not expect,
    // and the message names the step whose commit changed it.
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision(
        "b2",
        "CREATE TABLE after_it (y int);",
        "DROP TABLE after_it;",
    );
    let run = project.run(&db, &["up"]).fails_with(12);
    assert_run!(
        "deferred_trigger_rewrites_the_heads_mid_run",
        shown(&run, &project, Some(&db))
    );
    assert!(
        !db.table_exists("after_it").await,
        "b2 ran after a1's commit changed the heads"
    );
    assert!(db.heads().await.is_empty());
    db.drop_db().await;
}

/// The same trigger, which also ends the session holding the migration lock (any session
/// its role may signal): the read-back on that session fails, and the heads read on
/// another still show the forgery (exit 12, not "lock lost"), after the last step and
/// between steps.
#[tokio::test]
async fn a_deferred_trigger_that_also_ends_the_locks_session_is_still_found() {
    const FORGE_AND_END: &str = "CREATE TABLE x (y int);
         CREATE FUNCTION forget() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             DELETE FROM wasmig_version;
             PERFORM pg_terminate_backend(l.pid) FROM pg_locks l
             WHERE l.locktype = 'advisory' AND l.granted
               AND l.pid <> pg_backend_pid()
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database());
             RETURN NULL;
         END $$;
         CREATE CONSTRAINT TRIGGER forget AFTER INSERT ON x
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION forget();
         INSERT INTO x VALUES (1);";
    for mid_run in [false, true] {
        let project = TestProject::new();
        let db = TestDb::new(Backend::Postgres, &project).await;
        project.sql_revision("a1", FORGE_AND_END, "DROP TABLE x; DROP FUNCTION forget();");
        if mid_run {
            project.sql_revision(
                "b2",
                "CREATE TABLE after_it (y int);",
                "DROP TABLE after_it;",
            );
        }
        let run = project.run(&db, &["up"]).fails_with(12);
        // (Between steps, the next step's begin may still see the lock held: the ended
        // session's locks go as it exits. Either way the heads decide.)
        assert!(
            run.stderr
                .contains("wasmig_version holds none where the steps recorded a1")
                && (mid_run
                    || run
                        .stderr
                        .contains("the session holding the migration lock ended")),
            "mid-run {mid_run}: {}",
            run.stderr
        );
        assert!(db.heads().await.is_empty());
        assert!(
            !db.table_exists("after_it").await,
            "b2 ran after a1's commit changed the heads"
        );
        db.drop_db().await;
    }
}

/// A read-back the server does not answer is not a match: the migration leaves a session
/// of its own (`dblink`, as a superuser may) waiting for a lock on `wasmig_version`, which
/// it takes as the step commits and holds past the run's wait. The run ends with exit 5,
/// saying the heads are not confirmed, not with success.
#[tokio::test]
async fn a_read_back_held_up_by_a_lock_is_not_taken_for_a_match() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision(
        "a1",
        "CREATE EXTENSION IF NOT EXISTS dblink;
         CREATE TABLE x (y int);
         -- Read first, so that the step holds a lock the LOCK below must wait for.
         SELECT count(*) FROM wasmig_version;
         SELECT dblink_connect('holder', 'host=127.0.0.1 user=postgres dbname=' || current_database());
         SELECT dblink_send_query('holder',
             'BEGIN; LOCK wasmig_version IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(30)');",
        "DROP TABLE x;",
    );
    let run = project.run(&db, &["up"]).fails_with(5);
    assert!(
        run.stderr
            .contains("after the run committed, the server did not answer wasmig's read-back"),
        "{}",
        run.stderr
    );
    // Its session still holds the lock: ended with the database.
    db.drop_db().await;
}

/// Written at a step's `COMMIT` by a deferred trigger of the migration's own table, after
/// every check of the step, so that the heads stay as recorded: history forged, rewritten
/// or erased, or the step's own stored copy given another `down_sql` (which a later
/// `wasmig down` from a checkout without the revision would run). The run compares what
/// the server holds afterwards with what its records wrote (exit 12), in the last step and
/// in one before it.
const WRITTEN_AT_COMMIT: [(&str, &str); 6] = [
    (
        "INSERT INTO wasmig_history (revision, direction, checksum, started_at, finished_at, duration_ms, wasmig_version) \
         VALUES ('c3', 'upgrade', 'x', now(), now(), 0, '0');",
        "a history row forged",
    ),
    (
        "UPDATE wasmig_history SET checksum = 'forged';",
        "every history row's checksum rewritten",
    ),
    (
        "UPDATE wasmig_history SET checksum = 'forged' WHERE revision = 'a1' AND direction = 'upgrade';",
        "the step's own history row rewritten",
    ),
    (
        "DELETE FROM wasmig_history WHERE revision = 'a1';",
        "the step's history row erased",
    ),
    (
        "UPDATE wasmig_artifact SET down_sql = 'DROP TABLE precious' WHERE revision = 'a1';",
        "the step's stored down_sql replaced",
    ),
    (
        // Every later run would stop at exit 13 over a revision that never failed.
        "INSERT INTO wasmig_failed VALUES ('zz', 'upgrade', '', 'zz', 1, 'forged', NULL, now());",
        "a failed mark forged",
    ),
];

#[tokio::test]
async fn a_failed_mark_written_beside_the_run_is_found_after_it() {
    // Through another session (dblink), committed at once: no check of the step's own
    // transaction counts it (found by a review, exit 0 before). The run then reads what
    // was written since its first step: a run without `transaction = "none"` steps writes
    // no failed mark.
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision("a1", "CREATE EXTENSION IF NOT EXISTS dblink;", "SELECT 1;");
    project.sql_revision(
        "b2",
        "SELECT dblink_exec('host=127.0.0.1 user=postgres dbname=' || current_database(),
             $$INSERT INTO wasmig_failed VALUES ('zz', 'upgrade', '', 'zz', 1, 'forged', NULL, now())$$);",
        "SELECT 1;",
    );
    let run = project.run(&db, &["up"]).fails_with(12);
    assert!(
        run.stderr.contains(
            "after the run committed, wasmig_failed holds 1 failed mark(s) written during the run"
        ),
        "{}",
        run.stderr
    );
    db.drop_db().await;
}

#[tokio::test]
async fn what_a_deferred_trigger_writes_to_history_or_artifacts_at_commit_is_found_after_the_run() {
    for (write, what) in WRITTEN_AT_COMMIT {
        for mid_run in [false, true] {
            let project = TestProject::new();
            let db = TestDb::new(Backend::Postgres, &project).await;
            project.sql_revision(
                "a1",
                &format!(
                    "CREATE TABLE x (y int);
                     CREATE FUNCTION late() RETURNS trigger LANGUAGE plpgsql AS $$
                     BEGIN {write} RETURN NULL; END $$;
                     CREATE CONSTRAINT TRIGGER late AFTER INSERT ON x
                         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION late();
                     INSERT INTO x VALUES (1);"
                ),
                "DROP TABLE x; DROP FUNCTION late();",
            );
            if mid_run {
                project.sql_revision("b2", "CREATE TABLE b (y int);", "DROP TABLE b;");
            }
            let run = project.run(&db, &["up"]).fails_with(12);
            // Between steps, a changed row count is seen as the next step begins (never
            // blamed on its SQL, which does not run), the rest after the run.
            assert!(
                (run.stderr.contains("after the run committed")
                    && run
                        .stderr
                        .contains("something wrote them at or after a step's COMMIT"))
                    || (mid_run
                        && run
                            .stderr
                            .contains("after step a1 committed, wasmig_history holds")),
                "{what} (mid-run {mid_run}): {}",
                run.stderr
            );
            if run.stderr.contains("after step a1 committed") {
                assert!(!db.table_exists("b").await, "{what}: b2 ran");
            }
            db.drop_db().await;
        }
    }
}

/// Variants from a review: a cast from `tid` to text of the migration's (the check writes
/// `ctid`s out with `tidout`, not a cast); a `CLUSTER` at `COMMIT` that moves the forged
/// rows onto the `ctid`s the record wrote, `xmin` and all (the tables' storage is compared
/// with the run's start); and a later step that fails, which must not hide what the
/// committed step before it let in.
#[tokio::test]
async fn a_forgery_at_commit_is_found_through_a_cast_a_cluster_or_a_later_failure() {
    const FORGE: &str =
        "UPDATE wasmig_artifact SET down_sql = 'DROP TABLE precious' WHERE revision = 'a1';";
    let trigger = |body: &str| {
        format!(
            "CREATE TABLE x (y int);
             CREATE FUNCTION late() RETURNS trigger LANGUAGE plpgsql AS $$
             DECLARE hid bigint;
             BEGIN {body} RETURN NULL; END $$;
             CREATE CONSTRAINT TRIGGER late AFTER INSERT ON x
                 DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION late();
             INSERT INTO x VALUES (1);"
        )
    };
    let cast = format!(
        "CREATE FUNCTION public.tidtext(tid) RETURNS text LANGUAGE sql IMMUTABLE AS $f$ SELECT '(0,1)'::text $f$;
         CREATE CAST (tid AS text) WITH FUNCTION public.tidtext(tid);
         {}",
        trigger(FORGE)
    );
    let cluster = trigger(
        "SELECT id INTO hid FROM wasmig_history WHERE revision = 'a1' ORDER BY id DESC LIMIT 1;
         UPDATE wasmig_history SET checksum = 'forged', direction = 'stamp' WHERE id = hid;
         EXECUTE format('CREATE INDEX cl_h ON wasmig_history ((CASE WHEN checksum = %L THEN 2 WHEN id = %s THEN 3 ELSE 0 END))', 'forged', hid);
         CLUSTER wasmig_history USING cl_h; DROP INDEX cl_h;
         ALTER TABLE wasmig_history SET WITHOUT CLUSTER;",
    );
    for (name, sql, later_fails) in [
        ("a cast from tid to text", cast.as_str(), false),
        ("CLUSTER at COMMIT", cluster.as_str(), false),
        ("a later step that fails", &trigger(FORGE), true),
    ] {
        let project = TestProject::new();
        let db = TestDb::new(Backend::Postgres, &project).await;
        db.exec("CREATE TABLE precious (v int)").await;
        project.sql_revision("a1", sql, "DROP TABLE x; DROP FUNCTION late();");
        if later_fails {
            project.sql_revision("b2", "SELECT 1/0;", "SELECT 1;");
        }
        let run = project.run(&db, &["up"]).fails_with(12);
        assert!(
            run.stderr.contains("after the run committed"),
            "{name}: {}",
            run.stderr
        );
        if later_fails {
            assert!(
                run.stderr.contains("division by zero"),
                "{name}: {}",
                run.stderr
            );
        }
        db.drop_db().await;
    }
}

/// The same writes by a second run of wasmig's own is not a forgery: a run that recorded
/// through the long way (a flag the cheap look saw), an `--atomic` run of several steps,
/// a downgrade, each find exactly what they wrote.
#[tokio::test]
async fn runs_find_exactly_what_their_records_wrote() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision("a1", "CREATE TABLE a (y int);", "DROP TABLE a;");
    project.sql_revision("b2", "CREATE TABLE b (y int);", "DROP TABLE b;");
    project.sql_revision("c3", "CREATE TABLE c (y int);", "DROP TABLE c;");
    project.run(&db, &["up", "b2"]).success();
    project.run(&db, &["up", "--atomic"]).success();
    project.run(&db, &["down", "a1"]).success();
    // A plain index on history makes every step record the long way; so do indexes that
    // cannot refuse what wasmig writes: a unique one on the primary key's columns and
    // more (what an interrupted REINDEX CONCURRENTLY leaves), a hash on a long column.
    db.exec(
        "CREATE INDEX history_by_revision ON wasmig_history (revision);
         CREATE UNIQUE INDEX version_again ON wasmig_version (revision);
         CREATE UNIQUE INDEX history_id_and_more ON wasmig_history (id, revision);
         CREATE INDEX errors_hashed ON wasmig_history USING hash (error);",
    )
    .await;
    project.run(&db, &["up"]).success();
    assert_eq!(db.heads().await, ["c3"]);
    db.drop_db().await;
}

/// Written by a migration: wasmig's batch tables, which only its batch transactions write,
/// after the check (a forged checkpoint would make a later batched revision resume past
/// rows it never walked; a forged partition, end a range no worker walked); a history row,
/// which wasmig never updates or deletes; the schema table, which only a run's start
/// writes; a failed mark, which only a `transaction = "none"` step's transactions write.
const FORGED_PROGRESS: [(&str, &str); 9] = [
    (
        "INSERT INTO wasmig_checkpoint VALUES ('c3', 'upgrade', '', 'c3', 'keyset:2:999999:0::999999', 5, 'x', now(), now())",
        "a forged checkpoint",
    ),
    (
        // Through a function, where no parser of the script's text would see the table.
        "CREATE FUNCTION forge() RETURNS void LANGUAGE plpgsql AS $$ BEGIN \
         EXECUTE 'INSERT INTO wasmig_' || 'checkpoint VALUES (''c3'', ''upgrade'', '''', ''c3'', ''x'', 5, ''x'', now(), now())'; END $$; \
         SELECT forge()",
        "a checkpoint forged in a function",
    ),
    (
        // Written and taken back in a savepoint the script rolls back: still written.
        "CREATE FUNCTION forge() RETURNS void LANGUAGE plpgsql AS $$ BEGIN \
         INSERT INTO wasmig_checkpoint VALUES ('c3', 'upgrade', '', 'c3', 'x', 5, 'x', now(), now()); \
         RAISE EXCEPTION 'undo'; EXCEPTION WHEN raise_exception THEN NULL; END $$; \
         SELECT forge()",
        "a checkpoint forged after a savepoint",
    ),
    (
        "INSERT INTO wasmig_partition (revision, part, parts, first_key, last_key, checkpoint, batches, done, token, updated_at) \
         VALUES ('c3', 0, 1, 0, 0, 'x', 1, 1, 1, now())",
        "a forged partition",
    ),
    (
        "INSERT INTO wasmig_checkpoint VALUES ('c3', 'upgrade', '', 'c3', 'x', 5, 'x', now(), now()); \
         DELETE FROM wasmig_checkpoint WHERE revision = 'c3'",
        "a checkpoint written and deleted again",
    ),
    (
        // The history's row count stays: only the server's count of updates says it.
        "UPDATE wasmig_history SET checksum = 'forged' WHERE revision = 'a1'",
        "a history row's checksum rewritten",
    ),
    (
        "INSERT INTO wasmig_history (revision, direction, checksum, started_at, finished_at, duration_ms, wasmig_version) \
         VALUES ('c3', 'upgrade', 'x', now(), now(), 0, '0'); \
         DELETE FROM wasmig_history WHERE revision = 'a1'",
        "a history row erased and another forged in its place",
    ),
    (
        // The next run's start would write it again (and fire what waits there).
        "DELETE FROM wasmig_schema WHERE version = 2",
        "a layout version's row deleted",
    ),
    (
        // Every later run would stop at exit 13 over a revision that never failed.
        "INSERT INTO wasmig_failed VALUES ('a1', 'upgrade', '', 'a1', 1, 'forged', NULL, now())",
        "a forged failed mark",
    ),
];

#[tokio::test]
async fn a_migration_that_writes_batch_progress_is_rolled_back_and_not_recorded() {
    for (sql, what) in FORGED_PROGRESS {
        for atomic in [false, true] {
            let project = TestProject::new();
            let db = TestDb::new(Backend::Postgres, &project).await;
            project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
            project.sql_revision(
                "b2",
                &format!("CREATE TABLE b (x int); {sql};"),
                "SELECT 1;",
            );
            let args: &[&str] = if atomic { &["up", "--atomic"] } else { &["up"] };
            let run = project.run(&db, args).fails_with(12);
            assert!(
                run.stderr.contains(
                    "row(s) of wasmig's tables that only wasmig writes, and only after its check"
                ),
                "{what} (atomic: {atomic}): {run:?}"
            );
            let heads: &[&str] = if atomic { &[] } else { &["a1"] };
            assert_eq!(db.heads().await, heads, "{what}");
            let history: &[&str] = if atomic { &[] } else { &["upgrade:a1"] };
            assert_eq!(db.history().await, history, "{what}");
            assert_eq!(
                db.count("SELECT count(*) FROM wasmig_schema").await,
                2,
                "{what}"
            );
            assert!(!db.table_exists("b").await, "{what}: b2 rolled back");
            assert_eq!(
                db.count("SELECT count(*) FROM wasmig_checkpoint").await
                    + db.count("SELECT count(*) FROM wasmig_partition").await
                    + db.count("SELECT count(*) FROM wasmig_failed").await,
                0,
                "{what}: nothing forged is left"
            );
            db.drop_db().await;
        }
    }
}

#[tokio::test]
async fn a_batch_whose_sql_forges_another_steps_progress_is_rolled_back() {
    // A batched revision's own statements (a trigger its UPDATE fires) forging a later
    // revision's checkpoint: found before the batch saves its own, in batch 1 and in a
    // later batch alike (whose session's count still holds the last batch's write).
    for from_batch in [1, 3] {
        let (project, db, _) =
            crate::batches::setup(Backend::Postgres, "batched", 1_000, 100).await;
        db.exec(&format!(
            "CREATE FUNCTION cheat() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF (SELECT max(id) FROM new_rows) > {from} THEN
                 INSERT INTO wasmig_checkpoint VALUES ('c2', 'upgrade', '', 'c2', 'x', 5, 'x', now(), now())
                 ON CONFLICT DO NOTHING;
               END IF;
               RETURN NULL;
             END $$;
             CREATE TRIGGER cheat AFTER UPDATE ON items REFERENCING NEW TABLE AS new_rows
             FOR EACH STATEMENT EXECUTE FUNCTION cheat();",
            from = (from_batch - 1) * 100
        ))
        .await;
        let run = project.run(&db, &["up"]).fails_with(12);
        assert!(
            run.stderr
                .contains(&format!("failed in batch {from_batch}"))
                && run.stderr.contains(
                    "row(s) of wasmig's tables that only wasmig writes, and only after its check"
                ),
            "batch {from_batch}: {run:?}"
        );
        assert!(db.heads().await.is_empty());
        // Only the batches before it, with their own checkpoint: nothing forged.
        let left = crate::batches::checkpoints(&db).await;
        if from_batch == 1 {
            assert!(left.is_empty(), "{left:?}");
        } else {
            assert_eq!(left, [format!("b1:upgrade:{}", from_batch - 1)]);
        }
        db.drop_db().await;
    }
}

/// `forge(what)`: once the step's SQL has armed it (made `spy_armed`, its last statement,
/// so that nothing fires while the step itself builds the trap), a head nobody applied
/// (`c3`) is written into the version table, once. `forge_imm` is the same, declared
/// immutable, as an index or a generation expression requires (nothing checks the claim).
const FORGE: &str = "CREATE FUNCTION forge(what text) RETURNS bool LANGUAGE plpgsql AS $$
     BEGIN
       IF pg_catalog.to_regclass('public.spy_armed') IS NOT NULL
          AND pg_catalog.current_setting('spy.busy', true) IS DISTINCT FROM 'on' THEN
         PERFORM pg_catalog.set_config('spy.busy', 'on', true);
         INSERT INTO public.wasmig_version VALUES ('c3') ON CONFLICT DO NOTHING;
         INSERT INTO public.forged VALUES (what);
       END IF;
       RETURN true;
     END $$;
     CREATE FUNCTION forge_imm(what text) RETURNS bool LANGUAGE plpgsql IMMUTABLE AS $$
     BEGIN RETURN public.forge(what); END $$;
     CREATE TABLE forged (what text);";

/// What runs an expression of the migration's as wasmig writes its tables, after every check
/// of the statement that records the step has passed (or, for a statistics object, as the
/// next `ANALYZE` does): with what the tamper check says of each. Each was seen to forge
/// the head when the check did not look for it.
const RUNS_AS_WASMIG_WRITES: [(&str, &str); 12] = [
    (
        "ALTER TABLE wasmig_history ADD CONSTRAINT spy CHECK (forge(revision));",
        "wasmig_history has the constraint spy (CHECK (forge(revision)))",
    ),
    (
        // wasmig's own check, by name, with a call added.
        "ALTER TABLE wasmig_history DROP CONSTRAINT wasmig_history_direction_check;
         ALTER TABLE wasmig_history ADD CONSTRAINT wasmig_history_direction_check
             CHECK (direction IN ('upgrade', 'downgrade', 'stamp', 'rehash', 'failed', 'resolve') AND forge(revision));",
        "wasmig_history has the constraint wasmig_history_direction_check",
    ),
    (
        // wasmig's own check, printed exactly as wasmig made it, but its `=` the
        // migration's: an operator earlier in the `search_path` than pg_catalog's.
        "CREATE FUNCTION spy_eq(a text, b text) RETURNS bool LANGUAGE plpgsql AS $$
         BEGIN RETURN forge(a) AND a OPERATOR(pg_catalog.=) b; END $$;
         CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = spy_eq);
         SET search_path = public, pg_catalog;
         ALTER TABLE wasmig_history DROP CONSTRAINT wasmig_history_direction_check;
         ALTER TABLE wasmig_history ADD CONSTRAINT wasmig_history_direction_check
             CHECK (direction IN ('upgrade', 'downgrade', 'stamp', 'rehash', 'failed', 'resolve'));",
        "wasmig_history has the constraint wasmig_history_direction_check",
    ),
    (
        "ALTER TABLE wasmig_failed ADD COLUMN spy bool DEFAULT forge('default');
         ALTER TABLE wasmig_history ADD COLUMN spy bool DEFAULT forge('default');",
        "wasmig_history.spy has a default (",
    ),
    (
        "ALTER TABLE wasmig_history ADD COLUMN spy bool GENERATED ALWAYS AS (forge_imm(revision)) STORED;",
        "wasmig_history.spy is generated",
    ),
    (
        "CREATE DOMAIN spied AS text CHECK (forge(VALUE));
         ALTER TABLE wasmig_history ALTER COLUMN checksum TYPE spied;",
        "wasmig_history.checksum is of the type ",
    ),
    (
        "CREATE INDEX spy ON wasmig_history ((forge_imm(revision)));",
        "wasmig_history has the index spy on an expression or with a predicate",
    ),
    (
        "CREATE INDEX spy ON wasmig_history (id) WHERE forge_imm(revision);",
        "wasmig_history has the index spy on an expression or with a predicate",
    ),
    (
        // wasmig's delete of the old head cascades to a table of the migration's, whose
        // trigger runs.
        "CREATE TABLE spy (r text REFERENCES wasmig_version ON DELETE CASCADE ON UPDATE CASCADE);
         CREATE FUNCTION spy_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM forge('cascade'); RETURN NULL; END $$;
         CREATE TRIGGER spy AFTER DELETE OR UPDATE ON spy FOR EACH ROW EXECUTE FUNCTION spy_deleted();
         INSERT INTO spy VALUES ('a1');",
        "wasmig_version is referenced by the foreign key spy_r_fkey of spy",
    ),
    (
        // An index on a plain column, whose comparison is the migration's (an operator
        // class needs a superuser, which the tests are).
        "CREATE FUNCTION spy_cmp(a text, b text) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
         BEGIN PERFORM forge('opclass'); RETURN pg_catalog.bttextcmp(a, b); END $$;
         CREATE OPERATOR CLASS spy_ops FOR TYPE text USING btree AS OPERATOR 1 pg_catalog.<,
             OPERATOR 2 pg_catalog.<=, OPERATOR 3 pg_catalog.=, OPERATOR 4 pg_catalog.>=,
             OPERATOR 5 pg_catalog.>, FUNCTION 1 spy_cmp(text, text);
         CREATE INDEX spy ON wasmig_history (revision spy_ops);",
        "wasmig_history has the index spy with an operator class or collation not built in",
    ),
    (
        // Run by the next ANALYZE (autovacuum's), as the table's owner, outside any run.
        "CREATE STATISTICS spy ON (forge_imm(revision)), id FROM wasmig_history;",
        "wasmig_history has the statistics object spy on an expression",
    ),
    (
        // A row stored in a partition directly is checked against the partition key.
        "CREATE TABLE spy (revision text) PARTITION BY LIST ((forge_imm(revision)));
         ALTER TABLE spy ATTACH PARTITION wasmig_version FOR VALUES IN (true);",
        "wasmig_version is a partition of spy",
    ),
];

#[tokio::test]
async fn what_would_run_as_wasmig_writes_is_found_before_it_does() {
    for (sql, found) in RUNS_AS_WASMIG_WRITES {
        let project = TestProject::new();
        let db = TestDb::new(Backend::Postgres, &project).await;
        project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
        project.sql_revision(
            "b2",
            &format!("CREATE TABLE b (x int); {FORGE} {sql} CREATE TABLE spy_armed ();"),
            "SELECT 1;",
        );
        let run = project.run(&db, &["up"]).fails_with(12);
        assert!(
            run.stderr
                .contains("upgrade of revision b2 failed and was rolled back")
                && run
                    .stderr
                    .contains("wasmig's tables were changed by something other than wasmig")
                && run.stderr.contains(found),
            "{found}: {run:?}"
        );
        assert_eq!(db.heads().await, ["a1"], "{found}");
        assert_eq!(db.history().await, ["upgrade:a1"], "{found}");
        assert!(!db.table_exists("b").await, "{found}: b2 rolled back");
        assert!(!db.table_exists("forged").await, "{found}: b2 rolled back");
        db.drop_db().await;
    }
}

#[tokio::test]
async fn what_would_run_as_wasmig_writes_added_between_runs_is_refused_before_anything_runs() {
    for (sql, found) in RUNS_AS_WASMIG_WRITES {
        let project = TestProject::new();
        let db = TestDb::new(Backend::Postgres, &project).await;
        project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
        project.run(&db, &["up"]).success();
        project.sql_revision("b2", "CREATE TABLE b (x int);", "DROP TABLE b;");
        db.exec(&format!("{FORGE} {sql} CREATE TABLE spy_armed ();"))
            .await;
        let run = project.run(&db, &["up"]).fails_with(12);
        assert!(
            run.stderr.contains(found) && !run.stderr.contains("applying b2"),
            "{found}: {run:?}"
        );
        assert!(!db.table_exists("b").await, "{found}: nothing ran");
        assert_eq!(db.count("SELECT count(*) FROM forged").await, 0, "{found}");
        let check = project.run(&db, &["check"]).fails_with(12);
        assert!(check.stderr.contains(found), "{found}: {check:?}");
        db.drop_db().await;
    }
}

/// The history table's own `direction` check, as wasmig makes it and as a wasmig that
/// predates `resolve` left it (then widened): neither is taken for tampering.
#[tokio::test]
async fn wasmigs_own_check_is_not_taken_for_tampering() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    project.run(&db, &["up"]).success();
    project.run(&db, &["check"]).success();
    // Made anew under another search_path, by the tables' owner: the same check.
    db.exec(
        "SET search_path = pg_catalog, public;
         ALTER TABLE public.wasmig_history DROP CONSTRAINT wasmig_history_direction_check;
         ALTER TABLE public.wasmig_history ADD CONSTRAINT wasmig_history_direction_check
             CHECK (direction IN ('upgrade', 'downgrade', 'stamp', 'rehash', 'failed', 'resolve'));",
    )
    .await;
    project.sql_revision("b2", "CREATE TABLE b (x int);", "DROP TABLE b;");
    project.run(&db, &["up"]).success();
    project.run(&db, &["check"]).success();
    assert_eq!(db.heads().await, ["b2"]);
    db.drop_db().await;
}

/// A revision outside a transaction commits what it adds before wasmig records it: found
/// by the record's own check, so that none of wasmig's writes (the step's record, its
/// failed mark) runs it, and refused again by the next run until it is removed.
#[tokio::test]
async fn what_a_revision_outside_a_transaction_adds_is_found_before_wasmig_writes() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    let k2 = project.sql_revision(
        "k2",
        &format!(
            "{FORGE}
             ALTER TABLE wasmig_failed ADD CONSTRAINT spy CHECK (forge('failed'));
             ALTER TABLE wasmig_history ADD CONSTRAINT spy CHECK (forge(revision));
             ALTER TABLE wasmig_version ADD CONSTRAINT spy CHECK (forge(revision));
             CREATE TABLE spy_armed ();"
        ),
        "SELECT 1;",
    );
    crate::support::no_transaction(&k2);
    let run = project.run(&db, &["up"]).fails_with(12);
    assert!(
        run.stderr.contains("has the constraint spy (CHECK (forge("),
        "{run:?}"
    );
    assert_eq!(db.heads().await, ["a1"]);
    assert_eq!(db.count("SELECT count(*) FROM forged").await, 0);
    assert_eq!(db.failed_marks().await, ["k2"]);
    let again = project.run(&db, &["up"]).fails_with(12);
    assert!(again.stderr.contains("has the constraint spy"), "{again:?}");
    assert_eq!(db.count("SELECT count(*) FROM forged").await, 0);
    db.drop_db().await;
}

/// An unlogged table is emptied by a crash of the server: every revision would run again.
#[tokio::test]
async fn a_migration_that_makes_wasmigs_tables_unlogged_is_rolled_back() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    project.sql_revision(
        "b2",
        "CREATE TABLE b (x int); ALTER TABLE wasmig_version SET UNLOGGED;",
        "SELECT 1;",
    );
    let run = project.run(&db, &["up"]).fails_with(12);
    assert!(
        run.stderr
            .contains("wasmig_version is unlogged (a crash would empty it)"),
        "{run:?}"
    );
    assert_eq!(db.heads().await, ["a1"]);
    assert_eq!(
        db.count("SELECT count(*) FROM pg_class WHERE relname = 'wasmig_version' AND relpersistence = 'p'")
            .await,
        1
    );
    db.drop_db().await;
}

/// The schema table, which the start of a run writes when a layout migration's row is
/// missing: a trigger there, with the row deleted so that it fires, would run before any
/// step. Found in the step that adds it, and between runs before the layout is looked at.
#[tokio::test]
async fn a_trigger_on_the_schema_table_is_found_before_wasmig_writes_it() {
    let trap = "CREATE FUNCTION swap() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN UPDATE public.wasmig_version SET revision = 'c3'; RETURN NULL; END $$;
                CREATE TRIGGER swap AFTER INSERT ON wasmig_schema FOR EACH ROW EXECUTE FUNCTION swap();
                DELETE FROM wasmig_schema WHERE version = 2;";
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    project.sql_revision(
        "b2",
        &format!("CREATE TABLE b (x int); {trap}"),
        "SELECT 1;",
    );
    let run = project.run(&db, &["up"]).fails_with(12);
    assert!(
        run.stderr.contains("wasmig_schema has the trigger swap"),
        "{run:?}"
    );
    assert_eq!(db.heads().await, ["a1"]);
    assert_eq!(db.count("SELECT count(*) FROM wasmig_schema").await, 2);

    db.exec(trap).await;
    for args in [&["up"][..], &["stamp", "b2"], &["check"]] {
        let run = project.run(&db, args).fails_with(12);
        assert!(
            run.stderr.contains("wasmig_schema has the trigger swap"),
            "{args:?}: {run:?}"
        );
        assert_eq!(db.heads().await, ["a1"], "{args:?}");
    }
    db.drop_db().await;
}

/// The lease's table is written outside any step (taken, renewed, released, each committed
/// on its own): what would run there as it is written is refused in the step that adds it,
/// and when found before a run, the lease is not taken.
#[tokio::test]
async fn what_would_run_as_the_lease_is_written_is_refused() {
    let trap = "ALTER TABLE wasmig_lock ADD CONSTRAINT spy CHECK (forge(owner));";
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    project.sql_revision(
        "b2",
        &format!("CREATE TABLE b (x int); {FORGE} {trap} CREATE TABLE spy_armed ();"),
        "SELECT 1;",
    );
    let up = |project: &TestProject| {
        crate::support::Run::from_output(
            crate::support::wasmig_cmd(&project.dir)
                .args(["up", "--database-url", &db.url])
                .env("WASMIG_LOCK", "lease")
                .output()
                .unwrap(),
        )
    };
    // The step's fence finds the lease's table changed: refused, as a lease lost is.
    let run = up(&project).fails_with(11);
    assert_eq!(db.heads().await, ["a1"], "{run:?}");
    assert!(!db.table_exists("forged").await, "{run:?}");

    db.exec(&format!("{FORGE} {trap} CREATE TABLE spy_armed ();"))
        .await;
    let run = up(&project).fails_with(12);
    assert!(
        run.stderr.contains(
            "wasmig_lock is not the plain table wasmig created: wasmig_lock has the constraint spy"
        ),
        "{run:?}"
    );
    assert_eq!(db.heads().await, ["a1"]);
    assert_eq!(db.count("SELECT count(*) FROM forged").await, 0);
    db.drop_db().await;
}

/// A `TRUNCATE` or a rewrite (`ALTER TABLE … TYPE … USING`) of one of wasmig's tables
/// starts the server's counts of its writes again: rows forged after it would not be
/// counted (history emptied and written again with a forged checksum, its row count
/// unchanged). Found as the table's storage changing during the run.
const REWRITES: [(&str, &str); 3] = [
    (
        "TRUNCATE wasmig_history;
         INSERT INTO wasmig_history (id, revision, direction, checksum, started_at, finished_at, duration_ms, wasmig_version)
         OVERRIDING SYSTEM VALUE VALUES (1, 'a1', 'upgrade', 'forged', now(), now(), 0, '0');",
        "\"public\".wasmig_history was truncated or rewritten during the run",
    ),
    (
        "ALTER TABLE wasmig_checkpoint ALTER COLUMN checkpoint TYPE text USING 'forged';",
        "\"public\".wasmig_checkpoint was truncated or rewritten during the run",
    ),
    (
        "TRUNCATE wasmig_partition;",
        "\"public\".wasmig_partition was truncated or rewritten during the run",
    ),
];

#[tokio::test]
async fn a_migration_that_truncates_or_rewrites_wasmigs_tables_is_rolled_back() {
    for (sql, found) in REWRITES {
        let project = TestProject::new();
        let db = TestDb::new(Backend::Postgres, &project).await;
        project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
        project.sql_revision("b2", &format!("CREATE TABLE b (x int); {sql}"), "SELECT 1;");
        let run = project.run(&db, &["up"]).fails_with(12);
        assert!(run.stderr.contains(found), "{found}: {run:?}");
        assert_eq!(db.heads().await, ["a1"], "{found}");
        assert_eq!(db.history().await, ["upgrade:a1"], "{found}");
        assert_eq!(
            db.count("SELECT count(*) FROM wasmig_history WHERE checksum = 'forged'")
                .await,
            0,
            "{found}"
        );
        assert!(!db.table_exists("b").await, "{found}: b2 rolled back");
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_failed_mark_a_step_forges_is_refused_on_sqlite_and_mysql() {
    // PostgreSQL counts the step's writes (`FORGED_PROGRESS`); elsewhere the record reads
    // the marks back: a run begins only without one, and a step of its own transaction
    // writes none (exit 0 before, then exit 13 on every later run).
    for backend in [Backend::Sqlite, Backend::Mysql] {
        let project = TestProject::new();
        let db = TestDb::new(backend, &project).await;
        let at = match backend {
            Backend::Mysql => "NOW()",
            _ => "'2026-12-07T00:00:00Z'",
        };
        project.sql_revision(
            "a1",
            &format!(
                "INSERT INTO wasmig_failed VALUES ('zz', 'upgrade', '', 'zz', 1, 'forged', NULL, {at});"
            ),
            "SELECT 1;",
        );
        let run = project.run(&db, &["up"]).fails_with(12);
        assert!(
            run.stderr
                .contains("wasmig_failed held a failed mark of zz that no step of the run wrote"),
            "{backend:?}: {run:?}"
        );
        assert!(db.heads().await.is_empty(), "{backend:?}");
        assert_eq!(
            db.count("SELECT count(*) FROM wasmig_failed").await,
            0,
            "{backend:?}: rolled back"
        );
        db.drop_db().await;
    }
}

/// A sequence is not rolled back with its transaction: a migration's `setval` on the
/// history's identity sequence (to its maximum, where the next value fails; or back to 1,
/// where the next collides), or a committed change to it or to the identity, must not fail
/// its own record nor any later one (a `none` revision's, a stamp's), trusted or untrusted,
/// per step or under `--atomic`, nor when the step that moved it failed or was a dry run.
#[tokio::test]
async fn a_migration_moving_the_history_sequence_does_not_stop_later_records() {
    for change in [
        "SELECT pg_catalog.setval('wasmig_history_id_seq', 9223372036854775807);",
        "SELECT pg_catalog.setval('wasmig_history_id_seq', 1);",
        "ALTER SEQUENCE wasmig_history_id_seq MAXVALUE 2;",
        "ALTER TABLE wasmig_history ALTER COLUMN id DROP IDENTITY IF EXISTS;",
    ] {
        for (args, none) in [
            (&["up"][..], false),
            (&["up"][..], true),
            (&["up", "--untrusted"], false),
            (&["up", "--atomic"], false),
        ] {
            let value = change;
            let project = TestProject::new();
            let db = TestDb::new(Backend::Postgres, &project).await;
            project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
            let b2 = project.sql_revision("b2", change, "SELECT 1;");
            if none {
                crate::support::no_transaction(&b2);
            }
            project.sql_revision("c3", "CREATE TABLE u (x int);", "DROP TABLE u;");
            let run = project.run(&db, args);
            assert_eq!(run.code, 0, "{value} {args:?}: {run:?}");
            assert_eq!(db.heads().await, ["c3"], "{value} {args:?}");
            let down = project.run(&db, &["down", "base"]);
            assert_eq!(down.code, 0, "{value} {args:?}: {down:?}");
            let again = project.run(&db, &["up"]);
            assert_eq!(again.code, 0, "{value} {args:?}: {again:?}");
            assert_eq!(
                db.history().await,
                [
                    "upgrade:a1",
                    "upgrade:b2",
                    "upgrade:c3",
                    "downgrade:c3",
                    "downgrade:b2",
                    "downgrade:a1",
                    "upgrade:a1",
                    "upgrade:b2",
                    "upgrade:c3"
                ],
                "{value} {args:?}"
            );
            db.drop_db().await;
        }
    }
    for args in [&["up"][..], &["up", "--dry-run"]] {
        let project = TestProject::new();
        let db = TestDb::new(Backend::Postgres, &project).await;
        project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
        project.sql_revision(
            "b2",
            "SELECT pg_catalog.setval('wasmig_history_id_seq', 9223372036854775807);\nSELECT 1/0;",
            "SELECT 1;",
        );
        let failed = project.run(&db, &["up", "a1"]);
        assert_eq!(failed.code, 0, "{failed:?}");
        let moved = project.run(&db, args);
        assert_ne!(moved.code, 0, "{args:?}: {moved:?}");
        let stamped = project.run(&db, &["stamp", "base"]);
        assert_eq!(stamped.code, 0, "{args:?}: {stamped:?}");
        assert_eq!(db.history().await, ["upgrade:a1", "stamp:base"], "{args:?}");
        db.drop_db().await;
    }
}

/// A column added to wasmig's tables that refuses NULL (its default dropped once the rows
/// were filled) or draws from a sequence of its own, `NOT NULL` on a column wasmig writes
/// NULL into, a column wasmig writes dropped or renamed, a unique index, or an index on a
/// column whose values can be too large for it, would fail every later write of the table:
/// found in the step that adds it (rolled back), or, added by a revision outside a
/// transaction, before wasmig writes and by every later run before anything runs. (A
/// dropped column failed the step's record with "column does not exist", exit 5, the
/// database's blame, and every later write of that table the same way.)
#[tokio::test]
async fn a_column_wasmig_does_not_write_that_refuses_null_is_found() {
    let not_null = "ALTER TABLE wasmig_history ADD COLUMN z int NOT NULL DEFAULT 0;
                    ALTER TABLE wasmig_history ALTER COLUMN z DROP DEFAULT;";
    let identity = "ALTER TABLE wasmig_version ADD COLUMN n bigint NOT NULL DEFAULT 0;
                    ALTER TABLE wasmig_version ALTER COLUMN n DROP DEFAULT;
                    ALTER TABLE wasmig_version ALTER COLUMN n ADD GENERATED ALWAYS AS IDENTITY;";
    // (a none script's own failed mark holds NULL where wasmig writes it: `SET NOT NULL`
    // on those columns fails there, the migration's own failure.)
    for (sql, named, none_too) in [
        (
            not_null,
            "wasmig_history.z is a column wasmig does not write that refuses NULL",
            true,
        ),
        (
            identity,
            "wasmig_version.n is a column wasmig does not write that",
            true,
        ),
        (
            "ALTER TABLE wasmig_failed ALTER COLUMN sqlstate SET NOT NULL;",
            "wasmig_failed.sqlstate refuses NULL, which wasmig writes into it",
            false,
        ),
        (
            "ALTER TABLE wasmig_artifact ALTER COLUMN up_sql SET NOT NULL;",
            "wasmig_artifact.up_sql refuses NULL",
            true,
        ),
        (
            "ALTER TABLE wasmig_history DROP COLUMN sqlstate;",
            "wasmig_history has no column sqlstate, which wasmig writes",
            true,
        ),
        (
            "ALTER TABLE wasmig_failed RENAME COLUMN error TO err;",
            "wasmig_failed has no column error, which wasmig writes",
            true,
        ),
        (
            "CREATE UNIQUE INDEX one_each ON wasmig_history (direction);",
            "has the index one_each, unique on other columns",
            true,
        ),
        (
            "CREATE INDEX by_script ON wasmig_artifact (up_sql);",
            "has the index by_script, a btree on a column whose values can be too large",
            true,
        ),
    ] {
        for none in [false, true] {
            if none && !none_too {
                continue;
            }
            let project = TestProject::new();
            let db = TestDb::new(Backend::Postgres, &project).await;
            project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
            let b2 = project.sql_revision("b2", sql, "SELECT 1;");
            if none {
                crate::support::no_transaction(&b2);
            }
            let run = project.run(&db, &["up"]).fails_with(12);
            assert!(run.stderr.contains(named), "none={none}: {run:?}");
            assert_eq!(db.heads().await, ["a1"], "none={none}");
            if none {
                let again = project.run(&db, &["up"]).fails_with(12);
                assert!(again.stderr.contains(named), "{again:?}");
            }
            db.drop_db().await;
        }
    }
}

/// A `none` script renaming the version table's column: its statements committed, and
/// every later read of the heads fails with "column does not exist". That read failing is
/// explained by the tamper check (exit 12, naming the column), at the step and in a later
/// `current`, not reported as the database's failure (exit 5).
#[tokio::test]
async fn a_renamed_column_failing_wasmigs_reads_is_named_as_tampering() {
    let project = TestProject::new();
    let db = TestDb::new(Backend::Postgres, &project).await;
    project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
    let b2 = project.sql_revision(
        "b2",
        "CREATE TABLE u (x int);\nALTER TABLE wasmig_version RENAME COLUMN revision TO rev;",
        "SELECT 1;",
    );
    crate::support::no_transaction(&b2);
    let named = "wasmig_version has no column revision, which wasmig writes";
    let run = project.run(&db, &["up"]).fails_with(12);
    assert!(run.stderr.contains(named), "{run:?}");
    for args in [&["current"][..], &["up"]] {
        let again = project.run(&db, args).fails_with(12);
        assert!(again.stderr.contains(named), "{args:?}: {again:?}");
    }
    db.drop_db().await;
}

/// History rows a `none` script renumbers so that every id up to the largest bigint is
/// taken, or with rows at both ends of the range: later records still find an id (none
/// fails as a lost connection or a duplicate, exit 5), below the forged rows.
#[tokio::test]
async fn history_ids_forged_to_the_ends_of_the_range_do_not_stop_later_records() {
    let renumber = "CREATE TEMP TABLE hh AS SELECT * FROM wasmig_history;
         DELETE FROM wasmig_history;
         INSERT INTO wasmig_history (id, revision, direction, checksum, started_at, finished_at, duration_ms, wasmig_version, error, sqlstate)
           OVERRIDING SYSTEM VALUE
           SELECT 9223372036854775807 - (SELECT count(*) FROM hh g WHERE g.id > h.id),
                  revision, direction, checksum, started_at, finished_at, duration_ms, wasmig_version, error, sqlstate
           FROM hh h;";
    let ends = "INSERT INTO wasmig_history (id, revision, direction, checksum, started_at, finished_at, duration_ms, wasmig_version)
           OVERRIDING SYSTEM VALUE VALUES
           (9223372036854775807, 'x', 'stamp', 'x', now(), now(), 0, 'x'),
           (-100, 'y', 'stamp', 'y', now(), now(), 0, 'y');";
    for forge in [renumber, ends] {
        let project = TestProject::new();
        let db = TestDb::new(Backend::Postgres, &project).await;
        project.sql_revision("a1", "CREATE TABLE t (x int);", "DROP TABLE t;");
        project.run(&db, &["up"]).success();
        db.exec(forge).await;
        project.sql_revision("b2", "CREATE TABLE u (x int);", "DROP TABLE u;");
        project.run(&db, &["up"]).success();
        project.run(&db, &["down", "a1"]).success();
        let ids = db
            .strings("SELECT id::text FROM wasmig_history WHERE revision = 'b2' ORDER BY id")
            .await;
        assert_eq!(ids.len(), 2, "{ids:?}");
        // Below the forged row at the top, in the order they were written.
        let ids: Vec<i64> = ids.iter().map(|i| i.parse().unwrap()).collect();
        assert!(ids[0] < ids[1] && ids[1] < i64::MAX, "{ids:?}");
        if forge == renumber {
            db.drop_db().await;
            continue;
        }
        // And above a1's record (not moved here), written before them.
        let a1: i64 = db
            .strings("SELECT max(id)::text FROM wasmig_history WHERE revision = 'a1' AND direction = 'upgrade'")
            .await[0]
            .parse()
            .unwrap();
        assert!(a1 < ids[0], "a1 at {a1}, b2 at {ids:?}");
        db.drop_db().await;
    }
}

//! The untrusted policy's classifier, on PostgreSQL's parser and SQLite's split: each
//! refused class with its variants (case, comments, quoting, schema qualification, nesting
//! in expressions, SQL and PL/pgSQL bodies, `DO` blocks), statements that must still run,
//! and trusted mode unchanged. The refusals are checked on the real servers by the
//! end-to-end tests (`tests/e2e/hostile/policy.rs`).

use super::*;
use crate::tx_control;
use wasmig_contract::Dialect;
use wasmig_plan::Capabilities;

/// The rule `sql` breaks on PostgreSQL in untrusted mode, if any (panics on any other
/// error: these statements all parse).
fn rule(sql: &str) -> Option<String> {
    let e = tx_control::check(sql, Dialect::Postgres, &Policy::UNTRUSTED).err()?;
    assert_eq!(e.code, "WASMIG-POLICY", "{sql}: {e:?}");
    let rule = e
        .message
        .split("(rule: ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .expect("the message names its rule");
    Some(rule.to_owned())
}

/// Asserts every statement breaks `expected`, and passes in trusted mode.
fn refused(expected: &str, statements: &[&str]) {
    for sql in statements {
        assert_eq!(rule(sql).as_deref(), Some(expected), "{sql}");
        assert!(
            tx_control::check(sql, Dialect::Postgres, &Policy::TRUSTED).is_ok(),
            "trusted: {sql}"
        );
    }
}

fn allowed(statements: &[&str]) {
    for sql in statements {
        assert_eq!(rule(sql), None, "{sql}");
    }
}

#[test]
fn copy_to_or_from_a_program_or_a_server_file_is_refused_and_stdin_is_not() {
    refused(
        "server-programs",
        &[
            "COPY (select 1) TO PROGRAM 'touch /tmp/x'",
            "copy t from program 'curl http://x'",
            "/* x */ CoPy t (a, b) FROM PROGRAM 'id' WITH (FORMAT csv)",
            "SELECT 1; COPY t TO PROGRAM 'x'",
        ],
    );
    refused(
        "server-files",
        &[
            "COPY t FROM '/etc/passwd'",
            "COPY (SELECT 1) TO '/tmp/out'",
            "copy t to E'/tmp/\\x41'",
        ],
    );
    // To or from the client: not the policy's (wasmig's own `copy-in` sends them), but
    // refused in a migration's SQL in every mode, and passed for wasmig's own copy only
    // within the revision's capabilities.
    let read = Capabilities::parse_list("read").unwrap();
    let reading = Policy::TRUSTED.with_capabilities("r1", Some(read), None);
    for sql in [
        "COPY t FROM STDIN",
        "COPY t (a, b) FROM STDIN WITH (FORMAT csv)",
        "COPY (SELECT 1) TO STDOUT",
        "copy t to stdout",
    ] {
        for policy in [&Policy::TRUSTED, &Policy::UNTRUSTED] {
            let e = tx_control::check(sql, Dialect::Postgres, policy).unwrap_err();
            assert_eq!(e.code, "WASMIG-STATE", "{sql}");
            assert!(e.message.contains("is not allowed in a migration"), "{e:?}");
            assert!(tx_control::check_own_copy(sql, policy).is_ok(), "{sql}");
        }
    }
    let e = tx_control::check_own_copy("COPY t FROM STDIN", &reading).unwrap_err();
    assert_eq!(e.code, "WASMIG-POLICY", "{e:?}");
}

#[test]
fn the_exact_message_names_the_rule_and_what_to_do() {
    let e = tx_control::check(
        "SELECT 1; COPY (select 1) TO PROGRAM 'touch /tmp/x'",
        Dialect::Postgres,
        &Policy::UNTRUSTED,
    )
    .unwrap_err();
    assert_eq!(
        e.message,
        "COPY ... TO PROGRAM runs a program on the database server (statement 2 of the script); untrusted migrations may not (rule: server-programs): have an operator do it outside wasmig, or run the project trusted"
    );
}

#[test]
fn calls_of_refused_functions_are_refused_wherever_they_are_and_however_spelled() {
    refused(
        "server-files",
        &[
            "SELECT pg_read_file('/etc/passwd')",
            "select PG_READ_FILE('/etc/passwd')",
            "SELECT pg_catalog.pg_read_file('x')",
            "SELECT \"pg_read_file\"('x')",
            r#"SELECT U&"pg\005fread_file"('x')"#,
            "SELECT -- pg_read_file\n pg_read_binary_file /* c */ ('x')",
            "SELECT 1 WHERE length(pg_read_file('x')) > 0",
            "SELECT coalesce(NULL, (SELECT d FROM pg_ls_dir('.') d LIMIT 1))",
            "WITH x AS (SELECT pg_read_file('x') AS a) SELECT * FROM x",
            "INSERT INTO t SELECT pg_read_file('x')",
            "UPDATE t SET a = upper(pg_read_file('x'))",
            "EXPLAIN ANALYZE SELECT pg_stat_file('x')",
            "PREPARE p AS SELECT pg_read_file($1)",
            "CREATE VIEW v AS SELECT pg_ls_waldir()",
            "CREATE TABLE t (a text DEFAULT pg_read_file('x'))",
            "CREATE TABLE t (a text CHECK (a <> pg_read_binary_file('x')::text))",
            "ALTER TABLE t ADD COLUMN b text DEFAULT pg_ls_tmpdir()::text",
            "CREATE INDEX i ON t ((lo_import('/etc/passwd')))",
            "SELECT lo_export(1, '/tmp/x')",
            "SELECT pg_file_write('x', 'y', false)",
            "SELECT other_schema.pg_read_file('x')",
            "SELECT * FROM t WHERE a IN (SELECT pg_ls_logdir())",
        ],
    );
    refused(
        "foreign-data",
        &[
            "SELECT * FROM dblink('host=x', 'select 1') AS t(a int)",
            "SELECT public.dblink_exec('dbname=x', 'COMMIT')",
            "SELECT DBLINK_CONNECT('c', 'host=x')",
        ],
    );
    refused(
        "server-control",
        &[
            "SELECT pg_terminate_backend(1)",
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity",
            "SELECT pg_reload_conf()",
            "SELECT pg_rotate_logfile()",
            "SELECT pg_promote()",
            "SELECT pg_switch_wal()",
            "SELECT pg_create_restore_point('x')",
            "SELECT pg_backup_start('x')",
            "SELECT * FROM pg_backup_stop()",
        ],
    );
    refused(
        "hidden-sql",
        &[
            "SELECT query_to_xml('select 1', true, true, '')",
            "SELECT query_to_xmlschema('select 1', true, true, '')",
            "SELECT query_to_xml_and_xmlschema('select 1', true, true, '')",
            "SELECT cursor_to_xml('c', 1, true, true, '')",
            "SELECT set_config(current_setting('x.y'), 'postgres', false)",
        ],
    );
    refused(
        "roles",
        &[
            "SELECT set_config('role', 'postgres', false)",
            "select set_config('SESSION_AUTHORIZATION', 'x', true)",
            "SELECT 1 WHERE set_config('role'::text, 'x', true) IS NOT NULL",
        ],
    );
}

#[test]
fn functions_are_matched_by_their_whole_name_in_any_schema() {
    // Decided: a name in any schema (an extension's functions live in any), and only the
    // whole name: a function of one's own named `my_pg_read_file` runs.
    allowed(&[
        "SELECT my_pg_read_file('x')",
        "SELECT pg_read_file_wrapper()",
        "SELECT pg_catalog.pg_advisory_xact_lock(1), pg_sleep(0), now()",
        "SELECT set_config('search_path', 'app, public', true)",
        "SELECT 'pg_read_file(''x'')' AS text_not_a_call",
        "SELECT pg_read_file FROM t",
    ]);
}

#[test]
fn functions_run_without_a_call_naming_them_are_refused() {
    refused(
        "server-control",
        &["CREATE CAST (int AS bool) WITH FUNCTION pg_terminate_backend(int)"],
    );
    refused(
        "server-files",
        &[
            "CREATE OPERATOR ##> (LEFTARG = text, FUNCTION = pg_read_file)",
            "GRANT EXECUTE ON FUNCTION pg_read_file(text) TO PUBLIC",
        ],
    );
}

#[test]
fn server_settings_libraries_and_extensions_not_on_the_list_are_refused() {
    refused(
        "server-settings",
        &[
            "ALTER SYSTEM SET archive_command = 'x'",
            "alter system reset all",
            "ALTER DATABASE d SET log_statement = 'all'",
            "ALTER DATABASE d CONNECTION LIMIT 0",
            "ALTER ROLE app SET search_path = x",
            "ALTER USER app IN DATABASE d SET work_mem = '1GB'",
        ],
    );
    refused(
        "server-control",
        &["LOAD 'auto_explain'", "load '/tmp/x.so'"],
    );
    refused(
        "extensions",
        &[
            "CREATE EXTENSION dblink",
            "create extension if not exists \"postgres_fdw\" schema x",
            "CREATE EXTENSION adminpack",
            "CREATE EXTENSION file_fdw CASCADE",
        ],
    );
    allowed(&[
        "CREATE EXTENSION pgcrypto",
        "create extension if not exists \"uuid-ossp\"",
        "CREATE EXTENSION citext SCHEMA public",
        "CREATE EXTENSION IF NOT EXISTS pg_trgm",
        "CREATE EXTENSION btree_gist; CREATE EXTENSION btree_gin; CREATE EXTENSION hstore",
        "DROP EXTENSION dblink",
        "ALTER EXTENSION pgcrypto UPDATE",
    ]);
}

#[test]
fn languages_other_than_sql_and_plpgsql_are_refused() {
    // PostgreSQL's grammar makes a parameterless CREATE LANGUAGE a CREATE EXTENSION.
    refused("extensions", &["CREATE LANGUAGE plpython3u"]);
    refused(
        "languages",
        &[
            "CREATE TRUSTED PROCEDURAL LANGUAGE x HANDLER h",
            "CREATE FUNCTION f() RETURNS int LANGUAGE c AS 'lib', 'sym'",
            "CREATE FUNCTION f(cstring) RETURNS int LANGUAGE internal AS 'int4in'",
            "create or replace function f() returns int as $$ import os $$ language plpython3u",
            "CREATE FUNCTION f() RETURNS int LANGUAGE \"C\" AS '/tmp/x.so', 'f'",
            "CREATE PROCEDURE p() LANGUAGE plperlu AS $$ system('id') $$",
            "DO LANGUAGE plpython3u $$ import os $$",
            "DO $$ system('id') $$ LANGUAGE plperlu",
        ],
    );
}

#[test]
fn roles_and_authorization_are_refused() {
    refused(
        "roles",
        &[
            "CREATE ROLE x",
            "CREATE USER x SUPERUSER",
            "CREATE GROUP g",
            "ALTER ROLE x SUPERUSER",
            "ALTER USER postgres PASSWORD 'x'",
            "ALTER GROUP g ADD USER x",
            "ALTER ROLE x RENAME TO y",
            "DROP ROLE x",
            "DROP USER IF EXISTS x",
            "DROP GROUP g",
            "GRANT pg_read_server_files TO app",
            "GRANT pg_execute_server_program TO CURRENT_USER",
            "REVOKE admin FROM app",
            "SET ROLE postgres",
            "set local role none",
            "RESET ROLE",
            "SET SESSION AUTHORIZATION 'x'",
            "SET SESSION AUTHORIZATION DEFAULT",
            "RESET SESSION AUTHORIZATION",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET role = 'postgres' AS 'select 1'",
            "ALTER FUNCTION f() SET role TO postgres",
        ],
    );
    allowed(&[
        "GRANT SELECT ON t TO app",
        "REVOKE INSERT ON t FROM PUBLIC",
        "ALTER TABLE t OWNER TO app",
        "SET search_path = x",
        "SET LOCAL work_mem = '64MB'",
        "SELECT current_user, session_user",
    ]);
}

#[test]
fn foreign_data_and_outbound_connections_are_refused() {
    refused(
        "foreign-data",
        &[
            "CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'x')",
            "CREATE FOREIGN DATA WRAPPER w",
            "ALTER FOREIGN DATA WRAPPER w OPTIONS (ADD x 'y')",
            "ALTER SERVER s OPTIONS (SET host 'y')",
            "CREATE USER MAPPING FOR CURRENT_USER SERVER s OPTIONS (user 'x', password 'y')",
            "ALTER USER MAPPING FOR PUBLIC SERVER s OPTIONS (SET password 'z')",
            "CREATE FOREIGN TABLE ft (a int) SERVER s",
            "IMPORT FOREIGN SCHEMA public FROM SERVER s INTO x",
            "CREATE SUBSCRIPTION sub CONNECTION 'host=x' PUBLICATION p",
            "ALTER SUBSCRIPTION sub ENABLE",
            "DROP SUBSCRIPTION sub",
        ],
    );
}

#[test]
fn sql_function_bodies_are_checked_with_the_same_rules() {
    refused(
        "server-files",
        &[
            "CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $$ SELECT pg_read_file('/etc/passwd') $$",
            "CREATE FUNCTION f() RETURNS text AS 'SELECT pg_read_file(''x'')' LANGUAGE sql",
            "CREATE FUNCTION f() RETURNS text LANGUAGE sql BEGIN ATOMIC SELECT pg_read_file('x'); END",
            "CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT lo_import('/x'); END",
        ],
    );
    refused(
        "server-programs",
        &[
            "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $b$ COPY (select 1) TO PROGRAM 'x' $b$",
        ],
    );
    allowed(&[
        "CREATE FUNCTION add(a int, b int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT a + b'",
        "CREATE FUNCTION g() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END",
        "CREATE OR REPLACE FUNCTION h(t text) RETURNS text AS $$ SELECT lower(t) $$ LANGUAGE sql",
    ]);
}

#[test]
fn plpgsql_of_functions_and_do_blocks_is_checked_with_the_same_rules() {
    refused(
        "server-files",
        &[
            "CREATE FUNCTION f() RETURNS text LANGUAGE plpgsql AS $$ BEGIN RETURN pg_read_file('x'); END $$",
            "CREATE FUNCTION f() RETURNS text LANGUAGE plpgsql AS $$ DECLARE x text := pg_read_file('x'); BEGIN RETURN x; END $$",
            "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ DECLARE a int[]; BEGIN a[length(pg_read_file('x'))] := 1; END $$",
            "CREATE FUNCTION trg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.a := pg_read_file('x'); RETURN NEW; END $$",
            "CREATE FUNCTION trg() RETURNS trigger LANGUAGE plpgsql AS $$ DECLARE x text; BEGIN IF TG_OP = 'INSERT' THEN x := pg_read_file('x'); END IF; RETURN NULL; END; $$",
            "CREATE FUNCTION evt() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_read_file(tg_tag); END $$",
            "DO $$ BEGIN PERFORM pg_read_file('/etc/passwd'); END $$",
            "do $body$ begin perform PG_CATALOG.pg_read_file('x'); end $body$",
            "DO 'BEGIN PERFORM pg_read_file(''x''); END'",
            "DO $$ BEGIN IF pg_ls_dir('.') IS NOT NULL THEN RAISE NOTICE 'x'; END IF; END $$",
            "DO $$ DECLARE r record; BEGIN FOR r IN SELECT pg_read_file('x') LOOP END LOOP; END $$",
            "DO $$ BEGIN EXECUTE 'SELECT pg_read_file(''x'')'; END $$",
            "DO $$ BEGIN EXECUTE 'DO $x$ BEGIN PERFORM pg_read_file(''y''); END $x$'; END $$",
        ],
    );
    refused(
        "server-programs",
        &[
            "DO $$ BEGIN COPY (select 1) TO PROGRAM 'touch /tmp/x'; END $$",
            "DO $$ BEGIN EXECUTE 'COPY (select 1) TO PROGRAM ''touch /tmp/x'''; END $$",
        ],
    );
    refused(
        "foreign-data",
        &[
            "CREATE PROCEDURE p() LANGUAGE plpgsql AS $$ BEGIN PERFORM dblink_exec('x', 'y'); END $$",
        ],
    );
    refused(
        "extensions",
        &["DO $$ BEGIN EXECUTE 'CREATE EXTENSION dblink'; END $$"],
    );
    refused(
        "roles",
        &[
            "DO $$ BEGIN SET ROLE postgres; END $$",
            "DO $$ BEGIN CREATE ROLE x; END $$",
        ],
    );
}

#[test]
fn plpgsql_dynamic_sql_that_is_not_a_constant_is_refused() {
    refused(
        "hidden-sql",
        &[
            "DO $$ BEGIN EXECUTE format('SELECT %I(%L)', 'pg_read_file', 'x'); END $$",
            "DO $$ BEGIN EXECUTE 'SELECT ' || 'pg_read_file(''x'')'; END $$",
            "DO $$ DECLARE q text := 'SELECT 1'; BEGIN EXECUTE q; END $$",
            "DO $$ DECLARE q text := 'SELECT 1'; r record; BEGIN FOR r IN EXECUTE q LOOP END LOOP; END $$",
            "CREATE FUNCTION f(q text) RETURNS SETOF int LANGUAGE plpgsql AS $$ BEGIN RETURN QUERY EXECUTE q; END $$",
            "DO $$ DECLARE c refcursor; q text := 'SELECT 1'; BEGIN OPEN c FOR EXECUTE q; END $$",
        ],
    );
}

#[test]
fn ordinary_migrations_still_pass() {
    allowed(&[
        "CREATE TABLE customers (id BIGINT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL)",
        "ALTER TABLE customers ADD COLUMN email_norm TEXT",
        "CREATE INDEX CONCURRENTLY i ON customers (lower(email))",
        "INSERT INTO t VALUES (1, 'x') ON CONFLICT DO NOTHING",
        "UPDATE customers SET email_norm = lower(email) WHERE id > $1",
        "DELETE FROM t WHERE a IS NULL",
        "SELECT now(), gen_random_uuid()",
        "COMMENT ON TABLE t IS 'pg_read_file is just text here'",
        "CREATE TRIGGER t BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION touch()",
        "DROP TABLE t; DROP SERVER IF EXISTS s; DROP USER MAPPING IF EXISTS FOR PUBLIC SERVER s",
        "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$",
        "CREATE FUNCTION f(p text) RETURNS text LANGUAGE plpgsql AS $$ DECLARE r text; BEGIN r := upper(p); RETURN r; END $$",
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_class WHERE relname = 't') THEN CREATE TABLE t (a int); END IF; END $$",
        "DO $$ BEGIN EXECUTE 'CREATE TABLE x (a int)'; EXECUTE 'UPDATE x SET a = $1' USING 1; END $$",
        "DO $$ DECLARE r record; BEGIN FOR r IN SELECT * FROM t LOOP RAISE NOTICE '%', r; END LOOP; END $$",
        "CREATE FUNCTION s() RETURNS SETOF int LANGUAGE plpgsql AS $$ BEGIN RETURN QUERY SELECT 1; END $$",
    ]);
}

#[test]
fn a_large_script_is_held_to_the_policy_statement_by_statement() {
    let mut script = String::new();
    for i in 0..12_000 {
        script.push_str(&format!("INSERT INTO t VALUES ({i}, 'row {i}');\n"));
    }
    assert!(crate::pg_parse::split_first(&script));
    assert!(tx_control::check(&script, Dialect::Postgres, &Policy::UNTRUSTED).is_ok());
    let hidden = format!("{script}SELECT pg_read_file('x');\n");
    let e = tx_control::check(&hidden, Dialect::Postgres, &Policy::UNTRUSTED).unwrap_err();
    assert_eq!(e.code, "WASMIG-POLICY");
    assert!(
        e.message.contains("statement 12001 of the script"),
        "{}",
        e.message
    );
    assert!(tx_control::check(&hidden, Dialect::Postgres, &Policy::TRUSTED).is_ok());
}

#[test]
fn sqlite_refuses_attach_vacuum_into_and_load_extension_lexically() {
    let check = |sql, policy| tx_control::check(sql, Dialect::Sqlite, policy).map_err(Box::new);
    for (sql, rule) in [
        ("ATTACH DATABASE '/tmp/x.db' AS x", "server-files"),
        ("attach '/tmp/x.db' as x", "server-files"),
        ("/* c */ DETACH x", "server-files"),
        ("VACUUM INTO '/tmp/copy.db'", "server-files"),
        ("vacuum main into '/tmp/copy.db'", "server-files"),
        ("SELECT load_extension('/tmp/x.so')", "extensions"),
        ("select 1; select LOAD_EXTENSION('x', 'y')", "extensions"),
    ] {
        let e = check(sql, &Policy::UNTRUSTED).unwrap_err();
        assert_eq!(e.code, "WASMIG-POLICY", "{sql}");
        assert!(
            e.message.contains(&format!("(rule: {rule})")),
            "{sql}: {}",
            e.message
        );
        assert!(check(sql, &Policy::TRUSTED).is_ok(), "trusted: {sql}");
    }
    for sql in [
        "CREATE TABLE t (a INTEGER)",
        "SELECT 'attach' AS word",
        "INSERT INTO t VALUES (1)",
        "VACUUM",
    ] {
        assert!(check(sql, &Policy::UNTRUSTED).is_ok(), "{sql}");
    }
}

/// What `sql` needs, as the capability check reads it.
fn needs(sql: &str) -> Vec<&'static str> {
    capabilities::needs_of(sql)
        .iter()
        .map(wasmig_plan::Capability::name)
        .collect()
}

#[test]
fn each_statement_needs_the_capability_of_what_it_does() {
    let cases: &[(&str, &[&str])] = &[
        ("SELECT 1", &[]),
        ("SELECT now(), current_user", &[]),
        ("SET LOCAL statement_timeout = '5s'", &[]),
        ("SHOW search_path", &[]),
        ("SELECT * FROM t WHERE x > 1", &["read"]),
        ("WITH a AS (SELECT 1) SELECT * FROM a", &["read"]),
        ("SELECT * FROM generate_series(1, 3)", &["read"]),
        ("COPY t TO STDOUT", &["read"]),
        ("LOCK TABLE t IN ACCESS SHARE MODE", &["read"]),
        ("INSERT INTO t SELECT * FROM u", &["write"]),
        ("UPDATE t SET x = 1 WHERE id = 2 RETURNING x", &["write"]),
        ("DELETE FROM t", &["write"]),
        (
            "MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN DELETE",
            &["write"],
        ),
        ("COPY t FROM STDIN", &["write"]),
        ("TRUNCATE t", &["write"]),
        ("SELECT * FROM t FOR UPDATE", &["write"]),
        ("LOCK TABLE t IN ACCESS EXCLUSIVE MODE", &["write"]),
        (
            "WITH d AS (DELETE FROM t RETURNING *) SELECT count(*) FROM d",
            &["read", "write"],
        ),
        ("SELECT setval('s', 10)", &["write"]),
        ("CALL p()", &["write"]),
        ("CREATE TABLE t (x int)", &["ddl"]),
        ("ALTER TABLE t ADD COLUMN y int", &["ddl"]),
        ("DROP TABLE t", &["ddl"]),
        ("CREATE INDEX CONCURRENTLY i ON t (x)", &["ddl"]),
        ("COMMENT ON TABLE t IS 'x'", &["ddl"]),
        ("CREATE VIEW v AS SELECT * FROM t", &["ddl"]),
        ("CREATE SEQUENCE s", &["ddl"]),
        ("CREATE TYPE mood AS ENUM ('a')", &["ddl"]),
        ("CREATE SCHEMA app", &["ddl"]),
        ("ANALYZE t", &["ddl"]),
        ("VACUUM t", &["ddl"]),
        ("REFRESH MATERIALIZED VIEW m", &["ddl"]),
        ("SELECT * INTO t2 FROM t", &["write", "ddl"]),
        ("GRANT SELECT ON t TO app", &["grant"]),
        ("REVOKE ALL ON t FROM PUBLIC", &["grant"]),
        (
            "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO app",
            &["grant"],
        ),
        ("ALTER TABLE t OWNER TO app", &["grant"]),
        ("ALTER FUNCTION f() OWNER TO app", &["grant"]),
        // Bodies count as what they do.
        ("DO $$ BEGIN INSERT INTO t VALUES (1); END $$", &["write"]),
        (
            "DO $$ BEGIN IF 1 > 0 THEN DROP TABLE t; END IF; END $$",
            &["ddl"],
        ),
        ("DO $$ BEGIN PERFORM count(*) FROM t; END $$", &["read"]),
        ("DO $$ BEGIN EXECUTE 'TRUNCATE t'; END $$", &["write"]),
        (
            "DO $$ BEGIN EXECUTE format('DROP TABLE %I', 't'); END $$",
            &["read", "write", "ddl", "grant"],
        ),
        (
            "CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             INSERT INTO audit VALUES (NEW.id); RETURN NEW; END $$",
            &["write", "ddl"],
        ),
        (
            "CREATE FUNCTION g() RETURNS int LANGUAGE sql AS 'SELECT count(*) FROM t'",
            &["read", "ddl"],
        ),
        (
            "CREATE FUNCTION h() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            &["ddl"],
        ),
    ];
    for (sql, expected) in cases {
        assert_eq!(needs(sql), *expected, "{sql}");
    }
}

#[test]
fn a_statement_needing_an_undeclared_capability_is_refused_naming_it_and_the_revision() {
    let read_write = Capabilities::parse_list("read,write").unwrap();
    let policy = Policy::TRUSTED.with_capabilities("b2", Some(read_write), None);
    let e = tx_control::check(
        "INSERT INTO t VALUES (1);\nDROP TABLE t",
        Dialect::Postgres,
        &policy,
    )
    .unwrap_err();
    assert_eq!(e.code, "WASMIG-POLICY");
    assert!(
        e.message.starts_with(
            "DROP TABLE (statement 2 of the script) needs the capability `ddl`, which revision b2 \
             does not declare in its migration.toml (it declares: read, write)"
        ),
        "{}",
        e.message
    );
    // Within the declaration, and with no declaration at all, it runs.
    assert!(tx_control::check("UPDATE t SET x = 1", Dialect::Postgres, &policy).is_ok());
    assert!(tx_control::check("DROP TABLE t", Dialect::Postgres, &Policy::TRUSTED).is_ok());
    // In a DO block, named as such; in untrusted mode too.
    let e = tx_control::check(
        "DO $$ BEGIN DELETE FROM t; GRANT SELECT ON t TO PUBLIC; END $$",
        Dialect::Postgres,
        &Policy::UNTRUSTED.with_capabilities("c3", Some(read_write), None),
    )
    .unwrap_err();
    assert!(
        e.message
            .starts_with("GRANT (in a DO block) (statement 1 of the script) needs the capability `grant`, which revision c3"),
        "{}",
        e.message
    );
    // Nothing declared: no statement that needs a capability passes.
    let none = Policy::TRUSTED.with_capabilities("d4", Some(Capabilities::NONE), None);
    assert!(
        tx_control::check(
            "SELECT 1; SET LOCAL work_mem = '64MB'",
            Dialect::Postgres,
            &none
        )
        .is_ok()
    );
    assert!(tx_control::check("SELECT * FROM t", Dialect::Postgres, &none).is_err());
}

#[test]
fn the_operators_ceiling_holds_a_revision_that_declares_nothing() {
    let ceiling = Capabilities::parse_list("read,write").unwrap();
    let policy = Policy::TRUSTED.with_capabilities("b2", None, Some(ceiling));
    let e = tx_control::check("CREATE TABLE t (x int)", Dialect::Postgres, &policy).unwrap_err();
    assert!(
        e.message.starts_with(
            "CREATE TABLE needs the capability `ddl`, which the operator does not allow \
             (WASMIG_ALLOWED_CAPABILITIES: read, write)"
        ),
        "{}",
        e.message
    );
    assert!(tx_control::check("INSERT INTO t VALUES (1)", Dialect::Postgres, &policy).is_ok());
    // SQLite's statements, by their keywords.
    assert!(tx_control::check("INSERT INTO t VALUES (1)", Dialect::Sqlite, &policy).is_ok());
    let e = tx_control::check("SELECT 1;\nDROP TABLE t", Dialect::Sqlite, &policy).unwrap_err();
    assert!(
        e.message
            .starts_with("DROP TABLE (statement 2 of the script) needs the capability `ddl`"),
        "{}",
        e.message
    );
    assert!(tx_control::check("DROP TABLE t", Dialect::Sqlite, &Policy::TRUSTED).is_ok());
}

#[test]
fn with_a_role_set_switching_roles_is_refused_in_trusted_mode_too() {
    let policy = Policy::TRUSTED.with_role(Some("app_migrator"));
    for sql in [
        "SET ROLE postgres",
        "reset role",
        "SET LOCAL ROLE postgres",
        "SET SESSION AUTHORIZATION postgres",
        "SELECT set_config('role', 'postgres', true)",
        "DO $$ BEGIN SET ROLE postgres; END $$",
        "DO $$ BEGIN EXECUTE 'RESET ROLE'; END $$",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET role = 'postgres' AS 'SELECT 1'",
        "SELECT set_config(lower('ROLE'), 'postgres', true)",
    ] {
        let e = tx_control::check(sql, Dialect::Postgres, &policy).unwrap_err();
        assert_eq!(e.code, "WASMIG-POLICY", "{sql}");
        assert!(
            e.message.contains("run as the role `app_migrator`"),
            "{sql}: {}",
            e.message
        );
        // Without a role, trusted mode lets it through.
        assert!(
            tx_control::check(sql, Dialect::Postgres, &Policy::TRUSTED).is_ok(),
            "{sql}"
        );
    }
    // What trusted mode allows otherwise still runs.
    for sql in [
        "SET LOCAL search_path = app, public",
        "SELECT pg_read_file('PG_VERSION')",
        "DO $$ BEGIN EXECUTE format('CREATE TABLE %I (x int)', 't'); END $$",
    ] {
        assert!(
            tx_control::check(sql, Dialect::Postgres, &policy).is_ok(),
            "{sql}"
        );
    }
}

/// The holes a review found (an attacker's reproductions), each refused now.
#[test]
fn renamed_catalog_functions_text_run_by_extensions_and_undone_limits_are_refused() {
    // A refused function renamed, moved or re-owned would run under another name.
    refused(
        "server-control",
        &[
            "ALTER FUNCTION pg_catalog.pg_read_file(text) RENAME TO innocent",
            "ALTER ROUTINE pg_catalog.pg_ls_dir(text) RENAME TO lsd",
            "ALTER FUNCTION pg_catalog.lower(text) OWNER TO app",
            "ALTER FUNCTION pg_catalog.upper(text) SET SCHEMA public",
            "alter table information_schema.tables rename to t",
        ],
    );
    // A built-in replaced (a SQL function is inlined where the built-in was called, by
    // wasmig's checks too), at the top level or in a PL/pgSQL body.
    refused(
        "server-control",
        &[
            "CREATE OR REPLACE FUNCTION pg_catalog.age(xid) RETURNS int4 LANGUAGE sql VOLATILE AS 'SELECT 0'",
            "create function PG_CATALOG.lower(text) returns text language sql as $$ select $1 $$",
            "CREATE OR REPLACE PROCEDURE information_schema.p() LANGUAGE sql AS 'SELECT 1'",
            "CREATE OPERATOR pg_catalog.=== (LEFTARG = int4, RIGHTARG = int4, FUNCTION = int4eq)",
            "CREATE AGGREGATE pg_catalog.sum2(int4) (SFUNC = int4pl, STYPE = int4)",
            "DO $$ BEGIN CREATE OR REPLACE FUNCTION pg_catalog.age(xid) RETURNS int4 LANGUAGE sql AS 'SELECT 0'; END $$",
            "CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN CREATE OR REPLACE FUNCTION pg_catalog.age(xid) RETURNS int4 LANGUAGE sql AS 'SELECT 0'; RETURN NULL; END $$",
        ],
    );
    // The same made unqualified, with the catalog first in the search_path.
    refused(
        "server-control",
        &[
            "SET search_path = pg_catalog",
            "SET LOCAL search_path TO pg_catalog, public",
            "set search_path = 'information_schema'",
            "SELECT set_config('search_path', 'pg_catalog, public', true)",
            "SELECT pg_catalog.set_config('search_path', 'pg_catalog', false)",
            "CREATE FUNCTION f() RETURNS void LANGUAGE sql SET search_path = pg_catalog AS 'SELECT 1'",
            "DO $$ BEGIN SET search_path = pg_catalog; END $$",
        ],
    );
    // A path given by an expression is refused too (whichever rule sees it first).
    let computed = "SELECT set_config('search_path', 'pg_' || 'catalog', true)";
    assert!(rule(computed).is_some(), "{computed}");
    // The same names in a schema of the migration's are its own business, and so is a
    // search_path that puts the catalog after it (or none: pg_dump's `''`).
    allowed(&[
        "SET search_path = public, pg_catalog",
        "SET search_path TO DEFAULT",
        "RESET search_path",
        "SELECT pg_catalog.set_config('search_path', '', false)",
        "SELECT set_config('search_path', 'app, public', true)",
        "CREATE OR REPLACE FUNCTION public.age(xid) RETURNS int4 LANGUAGE sql AS 'SELECT 0'",
        "CREATE FUNCTION lower2(text) RETURNS text LANGUAGE sql AS $$ SELECT pg_catalog.lower($1) $$",
        "CREATE OPERATOR app.=== (LEFTARG = int4, RIGHTARG = int4, FUNCTION = int4eq)",
    ]);
    for sql in [
        "ALTER FUNCTION pg_read_file(text) RENAME TO innocent",
        "ALTER FUNCTION pg_terminate_backend(integer, bigint) RENAME TO term",
        "ALTER FUNCTION lo_export(oid, text) SET SCHEMA public",
    ] {
        assert!(rule(sql).is_some(), "{sql}");
    }
    // tablefunc's crosstab and connectby run SQL given as text.
    refused(
        "hidden-sql",
        &[
            "SELECT * FROM crosstab('SELECT 1::text, ''k''::text, pg_read_file(''/etc/hostname'')') AS t(r text, v text)",
            "SELECT * FROM public.crosstab3('select 1')",
            "SELECT * FROM connectby('t', 'id', 'parent', '1', 0) AS t(id int, p int, l int)",
        ],
    );
    // Limits a migration could undo, also in a function's SET clause.
    refused(
        "limits",
        &[
            "SET LOCAL statement_timeout = 0",
            "set lock_timeout to default",
            "RESET statement_timeout",
            "SELECT set_config('statement_timeout', '0', true)",
            "SET client_connection_check_interval = 0",
            "CREATE FUNCTION slow() RETURNS void LANGUAGE sql SET statement_timeout = 0 AS $$ SELECT pg_sleep(8) $$",
            // Its next error would end the session, read as a lost connection.
            "SET LOCAL exit_on_error = on",
            "set Exit_On_Error to true",
            "SELECT pg_catalog.set_config('exit_on_error', 'on', true)",
            "CREATE FUNCTION boom() RETURNS void LANGUAGE sql SET exit_on_error = on AS $$ SELECT 1/0 $$",
            "DO $$ BEGIN PERFORM set_config('exit_on_error', 'on', true); END $$",
        ],
    );
    // Files and code on the server.
    refused(
        "server-files",
        &[
            "CREATE TABLESPACE evil LOCATION '/tmp/x'",
            "SELECT * FROM pg_file_settings",
            "SELECT count(*) FROM pg_catalog.pg_hba_file_rules",
        ],
    );
    refused(
        "server-control",
        &["CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION f()"],
    );
    allowed(&[
        "ALTER TABLE customers RENAME COLUMN a TO b",
        "ALTER FUNCTION touch() RENAME TO touched",
        "ALTER TABLE t OWNER TO app",
        "SELECT * FROM pg_catalog.pg_class WHERE relname = 't'",
    ]);
}

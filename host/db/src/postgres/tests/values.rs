//! Tests of the value codec through real statements: every WIT value type through a
//! column and back (bound and through `execute-many`'s literal scripts), the documented
//! formats of special values, untyped nulls and changing parameter types, and the
//! `WASMIG-BIND` and `WASMIG-DECODE` refusals.
//!
//! Not here: statement and transaction behaviour (`session`), the version tables
//! (`version_tables`).

use super::*;
use wasmig_contract::ArrayValue;

#[tokio::test]
async fn every_value_type_round_trips_through_a_column() {
    let t = TestDb::new().await;
    let mut s = t.session().await;
    use ArrayValue as A;
    let cases: Vec<(&str, Value)> = vec![
        ("boolean", Value::Bool(true)),
        ("smallint", Value::Int16(-32768)),
        ("integer", Value::Int32(2_000_000_000)),
        ("bigint", Value::Int64(i64::MIN)),
        ("real", Value::Float32(1.5)),
        ("double precision", Value::Float64(-2.25e100)),
        ("numeric", Value::Numeric(text("-12.3400"))),
        ("numeric(20, 2)", Value::Numeric(text("12.50"))),
        (
            "numeric",
            Value::Numeric(text("123456789012345678901234567890.000000000000000000001")),
        ),
        ("numeric", Value::Numeric(text("0.0000001"))),
        ("numeric", Value::Numeric(text("0"))),
        ("text", Value::Text(text("héllo ✓"))),
        ("varchar(20)", Value::Text(text("varying"))),
        ("bytea", Value::Bytes(vec![0, 1, 255])),
        ("json", Value::Json(text(r#"{"b":1,  "a":[true,null]}"#))),
        (
            "jsonb",
            Value::Jsonb(text(r#"{"a": [true, null], "b": 1}"#)),
        ),
        (
            "uuid",
            Value::Uuid(text("67e55044-10b1-426f-9247-bb680e5fe0c8")),
        ),
        ("date", Value::Date(text("2024-02-29"))),
        ("time", Value::Time(text("23:59:59.999999"))),
        ("time", Value::Time(text("03:04:05"))),
        (
            "timestamp",
            Value::Timestamp(text("2024-01-02T03:04:05.123456")),
        ),
        (
            "timestamptz",
            Value::Timestamptz(text("2024-01-02T03:04:05.000001Z")),
        ),
        (
            "timestamptz",
            Value::Timestamptz(text("1999-12-31T23:59:59Z")),
        ),
        (
            "boolean[]",
            Value::Array(A::Bool(vec![Some(true), None, Some(false)])),
        ),
        ("smallint[]", Value::Array(A::Int16(vec![Some(1), None]))),
        ("integer[]", Value::Array(A::Int32(vec![None, Some(-7)]))),
        ("integer[]", Value::Array(A::Int32(vec![]))),
        (
            "bigint[]",
            Value::Array(A::Int64(vec![Some(i64::MAX), None])),
        ),
        ("real[]", Value::Array(A::Float32(vec![Some(0.25), None]))),
        (
            "double precision[]",
            Value::Array(A::Float64(vec![None, Some(1e-300)])),
        ),
        (
            "numeric[]",
            Value::Array(A::Numeric(some(&["1.50", "", "-0.001"]))),
        ),
        (
            "text[]",
            Value::Array(A::Text(vec![
                Some(text("a,b")),
                None,
                Some(text("")),
                Some(text("\"q\"")),
            ])),
        ),
        (
            "bytea[]",
            Value::Array(A::Bytes(vec![Some(vec![1, 2]), None, Some(vec![])])),
        ),
        (
            "json[]",
            Value::Array(A::Json(some(&["[1, 2]", "", "\"s\""]))),
        ),
        (
            "jsonb[]",
            Value::Array(A::Jsonb(some(&["{\"k\": \"v\"}", ""]))),
        ),
        (
            "uuid[]",
            Value::Array(A::Uuid(some(&["", "00000000-0000-0000-0000-000000000001"]))),
        ),
        ("date[]", Value::Array(A::Date(some(&["1970-01-01", ""])))),
        (
            "time[]",
            Value::Array(A::Time(some(&["00:00:00", "", "12:30:00.500000"]))),
        ),
        (
            "timestamp[]",
            Value::Array(A::Timestamp(some(&["2000-01-01T00:00:00", ""]))),
        ),
        (
            "timestamptz[]",
            Value::Array(A::Timestamptz(some(&["", "2030-06-15T12:00:00.500000Z"]))),
        ),
    ];
    for (i, (ty, value)) in cases.iter().enumerate() {
        s.batch(&format!("CREATE TABLE t{i} (n int, v {ty})"))
            .await
            .unwrap();
        let inserted = s
            .execute(
                &format!("INSERT INTO t{i} (n, v) VALUES (1, $1), (2, $2)"),
                &[value.clone(), Value::Null],
            )
            .await
            .unwrap_or_else(|e| panic!("{ty}: {e:?}"));
        assert_eq!(inserted, 2);
        let result = s
            .query(&format!("SELECT v FROM t{i} ORDER BY n"), &[])
            .await
            .unwrap();
        assert_eq!(
            format!("{:?}", result.rows),
            format!("{:?}", vec![vec![value.clone()], vec![Value::Null]]),
            "{ty}"
        );
        // The same value through execute-many's one-round-trip script (literals).
        let many = s
            .execute_many(
                &format!("INSERT INTO t{i} (n, v) VALUES ($1, $2)"),
                &[
                    vec![Value::Int32(3), value.clone()],
                    vec![Value::Int32(4), Value::Null],
                    vec![Value::Int32(5), value.clone()],
                ],
            )
            .await
            .unwrap_or_else(|e| panic!("execute-many {ty}: {e:?}"));
        assert_eq!(many, 3, "{ty}");
        let result = s
            .query(&format!("SELECT v FROM t{i} WHERE n >= 3 ORDER BY n"), &[])
            .await
            .unwrap();
        assert_eq!(
            format!("{:?}", result.rows),
            format!(
                "{:?}",
                vec![vec![value.clone()], vec![Value::Null], vec![value.clone()]]
            ),
            "execute-many {ty}"
        );
    }
    let result = s.query("SELECT v FROM t25", &[]).await.unwrap();
    assert_eq!(result.columns[0].name, "v");
    assert_eq!(result.columns[0].type_name, "INT4[]");
}

#[tokio::test]
async fn execute_many_sends_hostile_text_and_special_floats_intact() {
    let t = TestDb::new().await;
    let mut s = t.session().await;
    s.batch("CREATE TABLE h (n int, t text, f float8, r real)")
        .await
        .unwrap();
    let hostile = [
        "'); DROP TABLE h; --",
        r"back\slash \' quote",
        "E'\\x' $$ dollar $$",
        "line\nbreak -- not a comment",
        "ünïcödé ✓",
    ];
    let floats = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 1e-300];
    let rows: Vec<Vec<Value>> = hostile
        .iter()
        .zip(floats)
        .enumerate()
        .map(|(n, (t, f))| {
            vec![
                Value::Int32(n as i32),
                Value::Text((*t).to_owned()),
                Value::Float64(f),
                Value::Float32(f as f32),
            ]
        })
        .collect();
    // A trailing line comment must not swallow the script's separators.
    let sql = "INSERT INTO h (n, t, f, r) VALUES ($1, $2, $3, $4) -- trailing comment";
    assert_eq!(s.execute_many(sql, &rows).await.unwrap(), 5);
    let back = s
        .query("SELECT t, f, r FROM h ORDER BY n", &[])
        .await
        .unwrap();
    for (row, (t, f)) in back.rows.iter().zip(hostile.iter().zip(floats)) {
        assert_eq!(
            format!("{:?}", row[0]),
            format!("{:?}", Value::Text((*t).to_owned()))
        );
        match (&row[1], &row[2]) {
            (Value::Float64(g), Value::Float32(r)) => {
                assert!(
                    g.to_bits() == f.to_bits() || (g.is_nan() && f.is_nan()),
                    "{g} vs {f}"
                );
                assert!(
                    r.to_bits() == (f as f32).to_bits() || (r.is_nan() && f.is_nan()),
                    "{r} vs {f}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
    // A parameter that is null in every row is declared `unknown`: the server infers it.
    s.batch("CREATE TABLE nulls (n int, b bytea)")
        .await
        .unwrap();
    let rows = vec![
        vec![Value::Int32(1), Value::Null],
        vec![Value::Int32(2), Value::Null],
    ];
    assert_eq!(
        s.execute_many("INSERT INTO nulls VALUES ($1, $2)", &rows)
            .await
            .unwrap(),
        2
    );
    // Several statements in one are refused, as for a bound statement, and run nothing.
    let err = s
        .execute_many(
            "INSERT INTO h (n) VALUES ($1); DROP TABLE h",
            &[vec![Value::Int32(9)], vec![Value::Int32(10)]],
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, "42601", "{err:?}");
}

#[tokio::test]
async fn special_values_read_in_the_documented_formats() {
    let t = TestDb::new().await;
    let mut s = t.session().await;
    let cases = [
        ("SELECT '12.50'::numeric", Value::Numeric(text("12.50"))),
        (
            "SELECT '-0.000123'::numeric",
            Value::Numeric(text("-0.000123")),
        ),
        (
            "SELECT '100000000.0001'::numeric",
            Value::Numeric(text("100000000.0001")),
        ),
        ("SELECT '24:00:00'::time", Value::Time(text("24:00:00"))),
        (
            "SELECT '2024-01-02 05:04:05.5+02'::timestamptz",
            Value::Timestamptz(text("2024-01-02T03:04:05.500000Z")),
        ),
        ("SELECT 'x'::char(3)", Value::Text(text("x  "))),
        ("SELECT 'pg_class'::name", Value::Text(text("pg_class"))),
        (
            "SELECT relkind FROM pg_class WHERE relname = 'pg_class'",
            Value::Text(text("r")),
        ),
        (
            "SELECT ARRAY['a'::char(2), NULL]",
            Value::Array(ArrayValue::Text(some(&["a ", ""]))),
        ),
        ("SELECT 26::oid", Value::Int64(26)),
        ("SELECT pg_sleep(0)", Value::Null),
        ("SELECT NULL", Value::Null),
    ];
    for (sql, expected) in cases {
        assert_eq!(
            format!("{:?}", scalar(&mut *s, sql, &[]).await),
            format!("{expected:?}"),
            "{sql}"
        );
    }
    // Values bound as parameters in non-canonical spellings come back canonical.
    let tz = scalar(
        &mut *s,
        "SELECT $1",
        &[Value::Timestamptz(text("2024-01-02T05:04:05+02:00"))],
    )
    .await;
    assert_eq!(
        format!("{tz:?}"),
        format!("{:?}", Value::Timestamptz(text("2024-01-02T03:04:05Z")))
    );
    let uuid = scalar(
        &mut *s,
        "SELECT $1",
        &[Value::Uuid(text("67E55044-10B1-426F-9247-BB680E5FE0C8"))],
    )
    .await;
    assert_eq!(
        format!("{uuid:?}"),
        format!(
            "{:?}",
            Value::Uuid(text("67e55044-10b1-426f-9247-bb680e5fe0c8"))
        )
    );
    // Domains read as their base type, enums as text.
    s.batch(
        "CREATE DOMAIN posint AS integer CHECK (VALUE > 0); CREATE TYPE mood AS ENUM ('sad', 'ok')",
    )
    .await
    .unwrap();
    let domain = scalar(&mut *s, "SELECT 5::posint", &[]).await;
    assert_eq!(format!("{domain:?}"), format!("{:?}", Value::Int32(5)));
    let mood = scalar(&mut *s, "SELECT 'ok'::mood", &[]).await;
    assert_eq!(
        format!("{mood:?}"),
        format!("{:?}", Value::Text(text("ok")))
    );
}

#[tokio::test]
async fn an_untyped_null_fits_any_column_and_parameter_types_may_change() {
    let t = TestDb::new().await;
    let mut s = t.session().await;
    s.batch("CREATE TABLE b (n serial, data bytea, big bigint, r real)")
        .await
        .unwrap();
    let insert = "INSERT INTO b (data, big, r) VALUES ($1, $2, $3)";
    // The first use prepares with untyped nulls: the server infers bytea, int8, float4.
    s.execute(insert, &[Value::Null, Value::Null, Value::Null])
        .await
        .unwrap();
    // Later uses bind other types to the same text: the cached statement must not
    // read int4 bytes as int8 or float4 bytes as int4.
    s.execute(
        insert,
        &[Value::Bytes(vec![7]), Value::Int32(5), Value::Float32(2.5)],
    )
    .await
    .unwrap();
    s.execute(
        insert,
        &[Value::Null, Value::Int64(1 << 40), Value::Int32(3)],
    )
    .await
    .unwrap();
    let rows = s
        .query("SELECT data, big, r FROM b ORDER BY n", &[])
        .await
        .unwrap()
        .rows;
    let expected = vec![
        vec![Value::Null, Value::Null, Value::Null],
        vec![Value::Bytes(vec![7]), Value::Int64(5), Value::Float32(2.5)],
        vec![Value::Null, Value::Int64(1 << 40), Value::Float32(3.0)],
    ];
    assert_eq!(format!("{rows:?}"), format!("{expected:?}"));
    for value in [
        Value::Int32(1),
        Value::Float32(1.5),
        Value::Text(text("x")),
        Value::Int64(2),
    ] {
        let back = scalar(&mut *s, "SELECT $1", std::slice::from_ref(&value)).await;
        assert_eq!(format!("{back:?}"), format!("{value:?}"));
    }
}

#[tokio::test]
async fn malformed_values_are_refused_with_wasmig_bind() {
    let t = TestDb::new().await;
    let mut s = t.session().await;
    let cases = [
        (
            Value::Numeric(text("abc")),
            "parameter $2: `abc` is not an exact decimal",
        ),
        (
            Value::Numeric(text("NaN")),
            "parameter $2: `NaN` is not an exact decimal",
        ),
        (Value::Numeric(text("1e5")), "is not an exact decimal"),
        (
            Value::Uuid(text("not-a-uuid")),
            "parameter $2: `not-a-uuid` is not a UUID",
        ),
        (
            Value::Date(text("2024-13-01")),
            "parameter $2: `2024-13-01` is not a date YYYY-MM-DD",
        ),
        (
            Value::Timestamptz(text("2024-01-02T03:04:05")),
            "is not an RFC 3339 timestamp with an offset",
        ),
        (
            Value::Json(text("{")),
            "parameter $2: `{` is not a JSON document",
        ),
        (
            Value::Array(ArrayValue::Date(some(&["2024-01-01", "", "yesterday"]))),
            "parameter $2 (array element 3): `yesterday` is not a date",
        ),
    ];
    for (value, message) in cases {
        let err = s
            .execute("SELECT $1, $2", &[Value::Int32(1), value])
            .await
            .unwrap_err();
        assert_eq!(err.code, "WASMIG-BIND");
        assert!(err.message.contains(message), "{}", err.message);
    }
    // execute-many checks every row before running any.
    s.batch("CREATE TABLE m (n int)").await.unwrap();
    let rows = vec![
        vec![Value::Numeric(text("1"))],
        vec![Value::Numeric(text("2"))],
        vec![Value::Numeric(text("x"))],
    ];
    let err = s
        .execute_many("INSERT INTO m VALUES ($1)", &rows)
        .await
        .unwrap_err();
    assert!(
        err.message.starts_with("row 3, parameter $1: `x`"),
        "{}",
        err.message
    );
    let count = scalar(&mut *s, "SELECT count(*) FROM m", &[]).await;
    assert_eq!(format!("{count:?}"), format!("{:?}", Value::Int64(0)));
}

#[tokio::test]
async fn unsupported_types_are_refused_with_wasmig_decode() {
    let t = TestDb::new().await;
    let mut s = t.session().await;
    let err = s
        .query("SELECT interval '1 day' AS span", &[])
        .await
        .unwrap_err();
    assert_eq!(err.code, "WASMIG-DECODE");
    assert!(
        err.message.contains("`span`") && err.message.contains("INTERVAL"),
        "{}",
        err.message
    );
    assert!(err.message.contains("cast it to text"), "{}", err.message);
    // Refused before running: the UPDATE did not happen.
    s.batch("CREATE TABLE w (n int, d interval); INSERT INTO w VALUES (1, '1 day')")
        .await
        .unwrap();
    assert!(
        s.query("UPDATE w SET n = 2 RETURNING d", &[])
            .await
            .is_err()
    );
    let n = scalar(&mut *s, "SELECT n FROM w", &[]).await;
    assert_eq!(format!("{n:?}"), format!("{:?}", Value::Int32(1)));
    // Values with no form in the WIT formats.
    for sql in [
        "SELECT 'NaN'::numeric AS x",
        "SELECT 'infinity'::date AS x",
        "SELECT '-infinity'::timestamptz AS x",
    ] {
        let err = s.query(sql, &[]).await.unwrap_err();
        assert_eq!(err.code, "WASMIG-DECODE", "{sql}");
        assert!(err.message.contains("`x`"), "{}", err.message);
    }
    // The cast the message suggests works.
    let text_value = scalar(&mut *s, "SELECT (interval '1 day')::text", &[]).await;
    assert_eq!(
        format!("{text_value:?}"),
        format!("{:?}", Value::Text(text("1 day")))
    );
}

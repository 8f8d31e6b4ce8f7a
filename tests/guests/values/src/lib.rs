//! Round-trips every WIT value type through the database: binds each as a parameter into a
//! column of the matching type, reads the row back, and compares with what the documented
//! formats say must come back. On SQLite it checks the documented subset, and that numeric
//! and arrays are refused with `WASMIG-BIND` (handled inside savepoints, so the migration
//! goes on). It leaves the table for the test to inspect from outside.

use wasmig_guest::{
    ArrayValue as A, ColumnData, ColumnValues, Dialect, Migration, PackedText, Result, Value as V,
    bail, db, info,
};

struct Values;

fn s(x: &str) -> String {
    x.to_owned()
}

/// (column, SQL type on PostgreSQL, SQL type on SQLite, value bound, value expected back on
/// PostgreSQL, value expected back on SQLite; `None` = not bindable on SQLite)
#[allow(clippy::type_complexity)]
fn cases() -> Vec<(&'static str, &'static str, &'static str, V, V, Option<V>)> {
    vec![
        (
            "b",
            "boolean",
            "INTEGER",
            V::Bool(true),
            V::Bool(true),
            Some(V::Int64(1)),
        ),
        (
            "i2",
            "smallint",
            "INTEGER",
            V::Int16(-32768),
            V::Int16(-32768),
            Some(V::Int64(-32768)),
        ),
        (
            "i4",
            "integer",
            "INTEGER",
            V::Int32(2147483647),
            V::Int32(2147483647),
            Some(V::Int64(2147483647)),
        ),
        (
            "i8",
            "bigint",
            "INTEGER",
            V::Int64(i64::MIN),
            V::Int64(i64::MIN),
            Some(V::Int64(i64::MIN)),
        ),
        (
            "f4",
            "real",
            "REAL",
            V::Float32(1.5),
            V::Float32(1.5),
            Some(V::Float64(1.5)),
        ),
        (
            "f8",
            "double precision",
            "REAL",
            V::Float64(-0.125),
            V::Float64(-0.125),
            Some(V::Float64(-0.125)),
        ),
        (
            "n",
            "numeric",
            "TEXT",
            V::Numeric(s("-12.3400")),
            V::Numeric(s("-12.3400")),
            None,
        ),
        (
            "t",
            "text",
            "TEXT",
            V::Text(s("héllo 'quoted' ✓")),
            V::Text(s("héllo 'quoted' ✓")),
            Some(V::Text(s("héllo 'quoted' ✓"))),
        ),
        (
            "by",
            "bytea",
            "BLOB",
            V::Bytes(vec![0, 255, 16]),
            V::Bytes(vec![0, 255, 16]),
            Some(V::Bytes(vec![0, 255, 16])),
        ),
        (
            "j",
            "json",
            "TEXT",
            V::Json(s(r#"{"a":1}"#)),
            V::Json(s(r#"{"a":1}"#)),
            Some(V::Text(s(r#"{"a":1}"#))),
        ),
        (
            "jb",
            "jsonb",
            "TEXT",
            V::Jsonb(s(r#"{"b":[1,2]}"#)),
            V::Jsonb(s(r#"{"b": [1, 2]}"#)),
            Some(V::Text(s(r#"{"b":[1,2]}"#))),
        ),
        (
            "u",
            "uuid",
            "TEXT",
            V::Uuid(s("67e55044-10b1-426f-9247-bb680e5fe0c8")),
            V::Uuid(s("67e55044-10b1-426f-9247-bb680e5fe0c8")),
            Some(V::Text(s("67e55044-10b1-426f-9247-bb680e5fe0c8"))),
        ),
        (
            "d",
            "date",
            "TEXT",
            V::Date(s("2024-02-29")),
            V::Date(s("2024-02-29")),
            Some(V::Text(s("2024-02-29"))),
        ),
        (
            "tm",
            "time",
            "TEXT",
            V::Time(s("23:59:58.5")),
            V::Time(s("23:59:58.500000")),
            Some(V::Text(s("23:59:58.5"))),
        ),
        (
            "ts",
            "timestamp",
            "TEXT",
            V::Timestamp(s("2024-01-02T03:04:05")),
            V::Timestamp(s("2024-01-02T03:04:05")),
            Some(V::Text(s("2024-01-02T03:04:05"))),
        ),
        (
            "tz",
            "timestamptz",
            "TEXT",
            V::Timestamptz(s("2024-01-02T03:04:05.123456+02:00")),
            V::Timestamptz(s("2024-01-02T01:04:05.123456Z")),
            Some(V::Text(s("2024-01-02T03:04:05.123456+02:00"))),
        ),
        ("nul", "bytea", "BLOB", V::Null, V::Null, Some(V::Null)),
        (
            "a_b",
            "boolean[]",
            "",
            V::Array(A::Bool(vec![Some(true), None])),
            V::Array(A::Bool(vec![Some(true), None])),
            None,
        ),
        (
            "a_i2",
            "smallint[]",
            "",
            V::Array(A::Int16(vec![Some(1), None])),
            V::Array(A::Int16(vec![Some(1), None])),
            None,
        ),
        (
            "a_i4",
            "integer[]",
            "",
            V::Array(A::Int32(vec![Some(1), None, Some(3)])),
            V::Array(A::Int32(vec![Some(1), None, Some(3)])),
            None,
        ),
        (
            "a_i8",
            "bigint[]",
            "",
            V::Array(A::Int64(vec![Some(-1)])),
            V::Array(A::Int64(vec![Some(-1)])),
            None,
        ),
        (
            "a_f4",
            "real[]",
            "",
            V::Array(A::Float32(vec![Some(0.5)])),
            V::Array(A::Float32(vec![Some(0.5)])),
            None,
        ),
        (
            "a_f8",
            "double precision[]",
            "",
            V::Array(A::Float64(vec![None, Some(2.25)])),
            V::Array(A::Float64(vec![None, Some(2.25)])),
            None,
        ),
        (
            "a_n",
            "numeric[]",
            "",
            V::Array(A::Numeric(vec![Some(s("1.10"))])),
            V::Array(A::Numeric(vec![Some(s("1.10"))])),
            None,
        ),
        (
            "a_t",
            "text[]",
            "",
            V::Array(A::Text(vec![Some(s("x")), None])),
            V::Array(A::Text(vec![Some(s("x")), None])),
            None,
        ),
        (
            "a_by",
            "bytea[]",
            "",
            V::Array(A::Bytes(vec![Some(vec![1, 2])])),
            V::Array(A::Bytes(vec![Some(vec![1, 2])])),
            None,
        ),
        (
            "a_j",
            "json[]",
            "",
            V::Array(A::Json(vec![Some(s("[1]"))])),
            V::Array(A::Json(vec![Some(s("[1]"))])),
            None,
        ),
        (
            "a_jb",
            "jsonb[]",
            "",
            V::Array(A::Jsonb(vec![Some(s("{}"))])),
            V::Array(A::Jsonb(vec![Some(s("{}"))])),
            None,
        ),
        (
            "a_u",
            "uuid[]",
            "",
            V::Array(A::Uuid(vec![Some(s(
                "00000000-0000-0000-0000-000000000001",
            ))])),
            V::Array(A::Uuid(vec![Some(s(
                "00000000-0000-0000-0000-000000000001",
            ))])),
            None,
        ),
        (
            "a_d",
            "date[]",
            "",
            V::Array(A::Date(vec![Some(s("1999-12-31"))])),
            V::Array(A::Date(vec![Some(s("1999-12-31"))])),
            None,
        ),
        (
            "a_tm",
            "time[]",
            "",
            V::Array(A::Time(vec![Some(s("00:00:01"))])),
            V::Array(A::Time(vec![Some(s("00:00:01"))])),
            None,
        ),
        (
            "a_ts",
            "timestamp[]",
            "",
            V::Array(A::Timestamp(vec![Some(s("2000-01-01T00:00:00"))])),
            V::Array(A::Timestamp(vec![Some(s("2000-01-01T00:00:00"))])),
            None,
        ),
        (
            "a_tz",
            "timestamptz[]",
            "",
            V::Array(A::Timestamptz(vec![Some(s("2000-01-01T00:00:00Z"))])),
            V::Array(A::Timestamptz(vec![Some(s("2000-01-01T00:00:00Z"))])),
            None,
        ),
    ]
}

impl Migration for Values {
    fn upgrade() -> Result<()> {
        let dialect = db::dialect();
        let cases: Vec<_> = cases()
            .into_iter()
            .filter(|c| dialect == Dialect::Postgres || c.5.is_some())
            .collect();
        let columns: Vec<String> = cases
            .iter()
            .map(|c| {
                format!(
                    "{} {}",
                    c.0,
                    if dialect == Dialect::Postgres {
                        c.1
                    } else {
                        c.2
                    }
                )
            })
            .collect();
        db::batch(&format!("CREATE TABLE value_rt ({})", columns.join(", ")))?;
        let placeholders: Vec<String> = (1..=cases.len())
            .map(|i| {
                if dialect == Dialect::Postgres {
                    format!("${i}")
                } else {
                    format!("?{i}")
                }
            })
            .collect();
        let names: Vec<&str> = cases.iter().map(|c| c.0).collect();
        let params: Vec<V> = cases.iter().map(|c| c.3.clone()).collect();
        db::execute(
            &format!(
                "INSERT INTO value_rt ({}) VALUES ({})",
                names.join(", "),
                placeholders.join(", ")
            ),
            &params,
        )?;
        let rows = db::query(&format!("SELECT {} FROM value_rt", names.join(", ")), &[])?;
        let row = rows.iter().next().expect("one row");
        let mut mismatches = Vec::new();
        for (i, case) in cases.iter().enumerate() {
            let expected = if dialect == Dialect::Postgres {
                &case.4
            } else {
                case.5.as_ref().unwrap()
            };
            let got: V = row.get(i)?;
            if format!("{got:?}") != format!("{expected:?}") {
                mismatches.push(format!("{}: expected {expected:?}, got {got:?}", case.0));
            }
        }
        if !mismatches.is_empty() {
            bail!("values did not round-trip:\n{}", mismatches.join("\n"));
        }

        // Values a backend cannot bind are refused, never coerced.
        let placeholder = if dialect == Dialect::Postgres {
            "$1"
        } else {
            "?1"
        };
        let mut refused = vec![V::Date(s("2024-02-30")), V::Uuid(s("not-a-uuid"))];
        if dialect == Dialect::Sqlite {
            refused.push(V::Numeric(s("1.5")));
            refused.push(V::Array(A::Int32(vec![Some(1)])));
        }
        for value in refused {
            let attempt = db::savepoint(|| {
                db::query(
                    &format!("SELECT {placeholder}"),
                    std::slice::from_ref(&value),
                )
            });
            match attempt {
                Ok(_) => bail!("{value:?} was accepted"),
                Err(e) => match e.sql() {
                    Some(sql) if sql.code == "WASMIG-BIND" => {}
                    _ => bail!("{value:?}: expected WASMIG-BIND, got {e}"),
                },
            }
        }
        copy_in(&cases, &names, &columns)?;
        by_columns(&cases)?;
        info!("all values round-tripped ({} columns)", cases.len());
        Ok(())
    }

    fn downgrade() -> Result<()> {
        db::batch("DROP TABLE value_rt; DROP TABLE value_copy; DROP TABLE \"we\"\"ird\"")?;
        Ok(())
    }
}

/// The same values through `copy-in` (COPY on PostgreSQL): a row of every value, a row of
/// nulls, read back and compared like the bound ones; then a name that needs quoting, a row
/// the database refuses and a row of the wrong width.
#[allow(clippy::type_complexity)]
fn copy_in(
    cases: &[(&'static str, &'static str, &'static str, V, V, Option<V>)],
    names: &[&str],
    columns: &[String],
) -> Result<()> {
    let dialect = db::dialect();
    db::batch(&format!(
        "CREATE TABLE value_copy (seq integer NOT NULL, {})",
        columns.join(", ")
    ))?;
    let mut copy_names = vec!["seq"];
    copy_names.extend_from_slice(names);
    let mut full = vec![V::Int32(1)];
    full.extend(cases.iter().map(|c| c.3.clone()));
    let mut nulls = vec![V::Int32(2)];
    nulls.extend(cases.iter().map(|_| V::Null));
    let written = db::copy_in("value_copy", &copy_names, &[full, nulls])?;
    if written != 2 {
        bail!("copy-in wrote {written} rows, expected 2");
    }
    let rows = db::query(
        &format!("SELECT {} FROM value_copy ORDER BY seq", names.join(", ")),
        &[],
    )?;
    if rows.len() != 2 {
        bail!("copy-in: {} rows read back", rows.len());
    }
    let mut mismatches = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let expected = if dialect == Dialect::Postgres {
            &case.4
        } else {
            case.5.as_ref().unwrap()
        };
        let got: V = rows[0].get(i)?;
        if format!("{got:?}") != format!("{expected:?}") {
            mismatches.push(format!("{}: expected {expected:?}, got {got:?}", case.0));
        }
        let null: V = rows[1].get(i)?;
        if null != V::Null {
            mismatches.push(format!("{}: expected null, got {null:?}", case.0));
        }
    }
    if !mismatches.is_empty() {
        bail!(
            "values did not round-trip through copy-in:\n{}",
            mismatches.join("\n")
        );
    }

    // Names are taken literally: a quote in a table name is part of the name.
    db::batch("CREATE TABLE \"we\"\"ird\" (\"Mixed Case\" text)")?;
    db::copy_in(
        "we\"ird",
        &["Mixed Case"],
        &[vec![V::Text(s("tab\tnew\nline\\ \\N"))]],
    )?;
    let back: String = db::query_one("SELECT \"Mixed Case\" FROM \"we\"\"ird\"", &[])?.get(0)?;
    if back != "tab\tnew\nline\\ \\N" {
        bail!("copy-in changed special characters: {back:?}");
    }

    // A row the database refuses is its SQL error; a row of the wrong width is refused first.
    let refused = db::savepoint(|| db::copy_in("value_copy", &["seq"], &[vec![V::Null]]));
    match refused {
        Ok(_) => bail!("a null was copied into a NOT NULL column"),
        Err(e) => match e.sql() {
            Some(sql) if !sql.code.starts_with("WASMIG-") => info!("refused: {}", sql.code),
            _ => bail!("expected the database's error, got {e}"),
        },
    }
    let wrong = db::savepoint(|| db::copy_in("value_copy", &["seq", "b"], &[vec![V::Int32(3)]]));
    match wrong {
        Err(e) if e.sql().is_some_and(|sql| sql.code == "WASMIG-BIND") => Ok(()),
        other => bail!("a row of the wrong width: {other:?}"),
    }
}

/// The same values through the column calls (WIT 0.4.0): the two rows `copy_in` wrote (every
/// value, then nulls) read back by `query-columns` must be what `query` reads; written back
/// by `copy-in-columns` (rows 3 and 4) and, on PostgreSQL, by `execute-columns` through
/// `UNNEST` (rows 5 and 6), they must equal rows 1 and 2 (the test compares them from
/// outside). Then what the calls refuse: an array column, columns that do not hold together,
/// and arrays on SQLite.
#[allow(clippy::type_complexity)]
fn by_columns(cases: &[(&'static str, &'static str, &'static str, V, V, Option<V>)]) -> Result<()> {
    let dialect = db::dialect();
    let scalars: Vec<&str> = cases
        .iter()
        .filter(|c| !matches!(c.3, V::Array(_)))
        .map(|c| c.0)
        .collect();
    let select = format!(
        "SELECT seq, {} FROM value_copy WHERE seq IN (1, 2) ORDER BY seq",
        scalars.join(", ")
    );
    let rows = db::query(&select, &[])?;
    let batch = db::query_columns(&select, &[])?;
    if batch.len() != 2 || batch.columns() != rows.columns() {
        bail!(
            "query-columns: {} rows, columns {:?}",
            batch.len(),
            batch.columns()
        );
    }
    let mut mismatches = Vec::new();
    for (j, column) in batch.columns().iter().enumerate() {
        for (i, row) in rows.iter().enumerate() {
            let want: V = row.get(j)?;
            let got = batch.get(j)?.value(i)?;
            if got != want {
                mismatches.push(format!(
                    "{} row {i}: query {want:?}, query-columns {got:?}",
                    column.name
                ));
            }
        }
    }
    if !mismatches.is_empty() {
        bail!(
            "query-columns differs from query:\n{}",
            mismatches.join("\n")
        );
    }
    let texts: Vec<Option<&str>> = batch.get("t")?.texts()?.collect();
    if texts != [Some("héllo 'quoted' ✓"), None] {
        bail!("query-columns texts: {texts:?}");
    }

    // Written back as columns, with seq 3 and 4.
    let mut values = batch.into_values();
    values[0] = ColumnValues::from_int32s(vec![3, 4]);
    let mut names = vec!["seq"];
    names.extend_from_slice(&scalars);
    let written = db::copy_in_columns("value_copy", &names, &values)?;
    if written != 2 {
        bail!("copy-in-columns wrote {written} rows, expected 2");
    }
    let unnest = format!(
        "INSERT INTO value_copy (seq, {}) SELECT * FROM UNNEST({})",
        scalars.join(", "),
        names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let ty = if *n == "seq" {
                    "integer"
                } else {
                    cases.iter().find(|c| c.0 == *n).expect("a case").1
                };
                format!("${}::{ty}[]", i + 1)
            })
            .collect::<Vec<_>>()
            .join(", ")
    );
    values[0] = ColumnValues::from_int32s(vec![5, 6]);
    if dialect == Dialect::Postgres {
        let written = db::execute_columns(&unnest, &values)?;
        if written != 2 {
            bail!("execute-columns wrote {written} rows, expected 2");
        }
        // An array column has no column shape.
        match db::savepoint(|| db::query_columns("SELECT a_i4 FROM value_rt", &[])) {
            Err(e) if e.sql().is_some_and(|sql| sql.code == "WASMIG-DECODE") => {}
            other => bail!("query-columns of an array column: {other:?}"),
        }
    } else {
        // No arrays on SQLite; and a column of two types has no one case.
        match db::savepoint(|| db::execute_columns("SELECT ?1", &values[..1])) {
            Err(e) if e.sql().is_some_and(|sql| sql.code == "WASMIG-BIND") => {}
            other => bail!("execute-columns on SQLite: {other:?}"),
        }
        match db::savepoint(|| db::query_columns("SELECT 1 UNION ALL SELECT 'x'", &[])) {
            Err(e) if e.sql().is_some_and(|sql| sql.code == "WASMIG-DECODE") => {}
            other => bail!("query-columns of a column of two types: {other:?}"),
        }
    }

    // Columns that do not hold together are refused before anything runs, with the
    // migration going on after the savepoint's rollback.
    let text = |text: &str, ends: Vec<u32>| ColumnValues {
        nulls: Vec::new(),
        data: ColumnData::Text(PackedText {
            text: text.to_owned(),
            ends,
        }),
    };
    let broken = [
        vec![ColumnValues::from_int32s(vec![7, 8]), text("a", vec![1])],
        vec![ColumnValues::from_int32s(vec![7]), text("äb", vec![1])],
        vec![ColumnValues::from_int32s(vec![7]), text("ab", vec![3])],
        vec![
            ColumnValues::from_int32s(vec![7, 8]),
            text("ab", vec![2, 1]),
        ],
        vec![
            ColumnValues {
                nulls: vec![true],
                data: ColumnData::Int32(vec![7, 8]),
            },
            text("ab", vec![1, 2]),
        ],
    ];
    for columns in broken {
        match db::savepoint(|| db::copy_in_columns("value_copy", &["seq", "t"], &columns)) {
            Err(e) if e.sql().is_some_and(|sql| sql.code == "WASMIG-BIND") => {}
            other => bail!("copy-in-columns of {columns:?}: {other:?}"),
        }
    }
    Ok(())
}

wasmig_guest::migration!(Values);

//! A component's SQL calls written out as a script a DBA runs by hand (`up --sql` for
//! component revisions): each statement with its parameter values as literals, in the form
//! the server reads exactly as it read the bound call.
//!
//! PostgreSQL: a statement with parameters becomes `PREPARE name (types) AS statement`, an
//! `EXECUTE name (literals)` per parameter row and `DEALLOCATE name` (`pg_script`'s form,
//! the one `execute-many` runs): the statement's text is not touched, and each literal is an
//! `E'…'` string read as its parameter's declared type. A copy-in becomes a `PREPARE`d
//! `INSERT` whose parameter types the server infers from the columns, as `COPY` reads text.
//!
//! SQLite has no `PREPARE` statement: each placeholder (`?`, `?NNN`, `:name`, `@name`,
//! `$name`, numbered as SQLite numbers them) is replaced by its value's literal, found by
//! the same lexical rules as the transaction-control check (quotes, identifiers and comments
//! skipped). Values are validated as when bound, so a value a run would refuse is refused.
//!
//! Not here: capturing the calls (the sandbox's journal), laying out the script
//! (`wasmig`'s offline writer).

#![allow(clippy::result_large_err)]

use std::fmt::Write as _;

use wasmig_contract::{Dialect, SqlError, Value};

use crate::pg_script;
use crate::value::{self, ParamRef};

/// The script of one statement run once per row of `rows` (a single call: one row; no
/// parameters: rows of nothing), each statement ended by `;`. `name` names the prepared
/// statement on PostgreSQL (unique within the script).
///
/// # Errors
/// `WASMIG-BIND` for a value a run would refuse too, or (SQLite) a statement whose
/// placeholders do not match its values.
pub fn statement_script(
    dialect: Dialect,
    sql: &str,
    rows: &[Vec<Value>],
    name: &str,
) -> Result<String, SqlError> {
    let sql = sql.trim().trim_end_matches(';').trim_end();
    // An execute-many of no rows ran nothing.
    if rows.is_empty() {
        return Ok(String::new());
    }
    match dialect {
        Dialect::Postgres if rows.iter().all(Vec::is_empty) => {
            Ok(format!("{sql}\n;\n").repeat(rows.len()))
        }
        Dialect::Postgres => match pg_script::script_named(sql, rows, 0, name, true)? {
            Some(script) => Ok(script + "\n"),
            // Rows that type a parameter differently: one statement per row.
            None => {
                let mut out = String::new();
                for (i, row) in rows.iter().enumerate() {
                    let one = pg_script::script_named(
                        sql,
                        std::slice::from_ref(row),
                        i,
                        &format!("{name}_{i}"),
                        true,
                    )?
                    .expect("one row types its parameters one way");
                    out.push_str(&one);
                    out.push('\n');
                }
                Ok(out)
            }
        },
        Dialect::Mysql => Err(SqlError::wasmig(
            "STATE",
            "writing a component's statements as a script (`up --sql`) is not supported on MySQL yet; run the revision with `up`",
        )),
        Dialect::Sqlite => {
            let mut out = String::new();
            for (i, row) in rows.iter().enumerate() {
                out.push_str(&sqlite_inline(sql, row, (rows.len() > 1).then_some(i))?);
                // On its own line, so a trailing `-- comment` cannot swallow it.
                out.push_str("\n;\n");
            }
            Ok(out)
        }
    }
}

/// The script of a copy-in of `rows` into `table` (`columns`): `INSERT`s that write what
/// the copy wrote.
///
/// # Errors
/// `WASMIG-BIND` for a name or value a run would refuse too.
pub fn copy_script(
    dialect: Dialect,
    table: &str,
    columns: &[String],
    rows: &[Vec<Value>],
    name: &str,
) -> Result<String, SqlError> {
    let target = crate::copy::target(table, columns)?;
    crate::copy::check_widths(rows, columns.len())?;
    if rows.is_empty() {
        return Ok(String::new());
    }
    match dialect {
        Dialect::Postgres => {
            let placeholders = (1..=columns.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let insert = format!("INSERT INTO {target} VALUES ({placeholders})");
            let mut out = String::new();
            for (n, chunk) in rows.chunks(pg_script::ROWS_PER_SCRIPT).enumerate() {
                let script = pg_script::script_named(
                    &insert,
                    chunk,
                    n * pg_script::ROWS_PER_SCRIPT,
                    &format!("{name}_{n}"),
                    false,
                )?
                .expect("an untyped script takes rows of any types");
                out.push_str(&script);
                out.push('\n');
            }
            Ok(out)
        }
        Dialect::Mysql => Err(SqlError::wasmig(
            "STATE",
            "writing a component's statements as a script (`up --sql`) is not supported on MySQL yet; run the revision with `up`",
        )),
        Dialect::Sqlite => {
            let mut out = String::new();
            let per = crate::copy::sqlite_rows_per_insert(columns.len());
            for (n, chunk) in rows.chunks(per).enumerate() {
                let _ = write!(out, "INSERT INTO {target} VALUES ");
                for (i, row) in chunk.iter().enumerate() {
                    if i > 0 {
                        out.push_str(",\n  ");
                    }
                    out.push('(');
                    for (c, v) in row.iter().enumerate() {
                        if c > 0 {
                            out.push_str(", ");
                        }
                        sqlite_literal(&mut out, v, ParamRef::copy_column(n * per + i, c))?;
                    }
                    out.push(')');
                }
                out.push_str(";\n");
            }
            Ok(out)
        }
    }
}

/// Whether `sql` only reads, surely: every statement a `SELECT` (or `VALUES`) that writes
/// nothing, in a `WITH` either, and calls no function (one could write, set a setting or
/// move a sequence), by PostgreSQL's parser. On SQLite, every statement starts with
/// `SELECT` or `VALUES` (its functions cannot write). `false` when unsure: the script then
/// runs it again, which a read survives.
pub fn reads_only(sql: &str, dialect: Dialect) -> bool {
    match dialect {
        Dialect::Postgres => crate::pg_parse::reads_only(sql),
        // Not captured on MySQL (see `statement_script`).
        Dialect::Mysql => false,
        // Every statement of it (a query may hold several): each a SELECT or VALUES.
        Dialect::Sqlite => crate::tx_control::statements(sql, Dialect::Sqlite).is_ok_and(|all| {
            !all.is_empty()
                && all.iter().all(|one| {
                    matches!(
                        crate::tx_control::first_word(one).as_deref(),
                        Some("SELECT" | "VALUES")
                    )
                })
        }),
    }
}

/// `sql` with each SQLite placeholder replaced by the literal of its value in `params`
/// (`row` numbers the row of an `execute-many` in errors).
fn sqlite_inline(sql: &str, params: &[Value], row: Option<usize>) -> Result<String, SqlError> {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + params.len() * 8);
    let mut names: Vec<(&str, usize)> = Vec::new();
    let mut largest = 0;
    let mut used = vec![false; params.len()];
    let mut copied = 0;
    let mut i = 0;
    let mismatch = |what: String| {
        SqlError::wasmig(
            "BIND",
            format!(
                "{what}; the statement's placeholders and its {} value(s) do not match",
                params.len()
            ),
        )
    };
    while i < b.len() {
        match b[i] {
            b'\'' | b'"' | b'`' => i = crate::tx_control::skip_quoted(b, i, b[i], false),
            b'[' => i = crate::tx_control::skip_quoted(b, i, b']', false),
            c if c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80 => {
                // A whole word at once, so a `$` inside it is seen as part of it.
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || b[i] == b'_'
                        || b[i] == b'$'
                        || b[i] >= 0x80)
                {
                    i += 1;
                }
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |p| i + p + 1);
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = sql[i + 2..].find("*/").map_or(b.len(), |p| i + 2 + p + 2);
            }
            b'?' | b':' | b'@' | b'$' => {
                let start = i;
                let mut end = i + 1;
                let index = if b[i] == b'?' {
                    while end < b.len() && b[end].is_ascii_digit() {
                        end += 1;
                    }
                    if end == start + 1 {
                        largest + 1
                    } else {
                        sql[start + 1..end].parse::<usize>().map_err(|_| {
                            mismatch(format!(
                                "the placeholder {} is out of range",
                                &sql[start..end]
                            ))
                        })?
                    }
                } else {
                    while end < b.len()
                        && (b[end].is_ascii_alphanumeric() || b[end] == b'_' || b[end] >= 0x80)
                    {
                        end += 1;
                    }
                    if end == start + 1 {
                        // A lone `:` `@` `$`: not a placeholder.
                        i += 1;
                        continue;
                    }
                    let name = &sql[start..end];
                    match names.iter().find(|(n, _)| *n == name) {
                        Some((_, index)) => *index,
                        None => {
                            names.push((name, largest + 1));
                            largest + 1
                        }
                    }
                };
                largest = largest.max(index);
                let value = index
                    .checked_sub(1)
                    .and_then(|k| params.get(k))
                    .ok_or_else(|| {
                        mismatch(format!(
                            "the statement has a placeholder {}",
                            &sql[start..end]
                        ))
                    })?;
                used[index - 1] = true;
                out.push_str(&sql[copied..start]);
                sqlite_literal(&mut out, value, ParamRef::new('?', index - 1).in_row(row))?;
                copied = end;
                i = end;
            }
            _ => i += 1,
        }
    }
    if let Some(k) = used.iter().position(|u| !u) {
        return Err(mismatch(format!("value {} has no placeholder", k + 1)));
    }
    out.push_str(&sql[copied..]);
    Ok(out)
}

/// Appends `value` as the SQLite literal that stores what binding it stores, validated as
/// binding validates it.
fn sqlite_literal(out: &mut String, value: &Value, at: ParamRef) -> Result<(), SqlError> {
    let text = |out: &mut String, t: &str| -> Result<(), SqlError> {
        if t.contains('\0') {
            return Err(
                at.error("text with the NUL character cannot be written as an SQLite literal")
            );
        }
        out.push('\'');
        out.push_str(&t.replace('\'', "''"));
        out.push('\'');
        Ok(())
    };
    match value {
        Value::Null => out.push_str("NULL"),
        Value::Bool(v) => out.push_str(if *v { "1" } else { "0" }),
        // A negative number in parentheses: after a `-` in the statement (`b -?`), a bare
        // `-5` would start a comment.
        Value::Int16(v) => signed(out, i64::from(*v)),
        Value::Int32(v) => signed(out, i64::from(*v)),
        Value::Int64(v) => signed(out, *v),
        Value::Float32(v) => sqlite_float(out, f64::from(*v)),
        Value::Float64(v) => sqlite_float(out, *v),
        Value::Text(t) => text(out, t)?,
        Value::Bytes(bytes) => {
            out.push_str("X'");
            for b in bytes {
                let _ = write!(out, "{b:02X}");
            }
            out.push('\'');
        }
        other => match value::sqlite_text(other, at)? {
            Some(t) => text(out, t)?,
            None => unreachable!("every other kind is written above"),
        },
    }
    Ok(())
}

/// An integer, negative ones in parentheses (see [`sqlite_literal`]).
fn signed(out: &mut String, v: i64) {
    if v < 0 {
        let _ = write!(out, "({v})");
    } else {
        let _ = write!(out, "{v}");
    }
}

/// A float as SQLite reads it back exactly: Rust's shortest round-trip form with an
/// exponent (`1e300`), NaN as NULL (what binding NaN stores), infinities as `9e999`;
/// negative ones in parentheses.
fn sqlite_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NULL");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "9e999" } else { "(-9e999)" });
    } else if v < 0.0 {
        let _ = write!(out, "({v:e})");
    } else {
        let _ = write!(out, "{v:e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Value {
        Value::Text(s.to_owned())
    }

    #[test]
    fn sqlite_placeholders_are_numbered_as_sqlite_numbers_them() {
        let params = [Value::Int64(1), t("it's"), Value::Null];
        assert_eq!(
            sqlite_inline("INSERT INTO t VALUES (?, ?, ?)", &params, None).unwrap(),
            "INSERT INTO t VALUES (1, 'it''s', NULL)"
        );
        // A named one keeps its number where it comes again; `?` follows the largest.
        assert_eq!(
            sqlite_inline(
                "UPDATE t SET a = :a, b = ? WHERE a = :a OR c = ?3",
                &params,
                None
            )
            .unwrap(),
            "UPDATE t SET a = 1, b = 'it''s' WHERE a = 1 OR c = NULL"
        );
        // Quotes, identifiers and comments hold no placeholders.
        assert_eq!(
            sqlite_inline(
                "SELECT '?', \"a?\", [b?], `c?` -- ?\n/* :x */ FROM t WHERE x = $x",
                &[Value::Bool(true)],
                None
            )
            .unwrap(),
            "SELECT '?', \"a?\", [b?], `c?` -- ?\n/* :x */ FROM t WHERE x = 1"
        );
        assert!(sqlite_inline("SELECT ?, ?", &[Value::Int64(1)], None).is_err());
        // After a minus, a negative value cannot start a comment; a name after a word is
        // still a placeholder (only `$` belongs to an identifier).
        assert_eq!(
            sqlite_inline(
                "UPDATE t SET b = b -? WHERE c = 1 OR d = 2 THEN:v",
                &[Value::Int64(-5), Value::Float64(-1.5)],
                None
            )
            .unwrap(),
            "UPDATE t SET b = b -(-5) WHERE c = 1 OR d = 2 THEN(-1.5e0)"
        );
        assert!(reads_only("SELECT 1; VALUES (2)", Dialect::Sqlite));
        assert!(!reads_only(
            "SELECT 1; CREATE INDEX i ON t (x)",
            Dialect::Sqlite
        ));
        assert_eq!(
            statement_script(Dialect::Sqlite, "INSERT INTO t VALUES (?)", &[], "x").unwrap(),
            ""
        );
        assert!(sqlite_inline("SELECT ?", &[Value::Int64(1), Value::Int64(2)], None).is_err());
    }

    #[test]
    fn sqlite_literals_store_what_binding_stores() {
        let mut out = String::new();
        for v in [
            Value::Float64(0.1),
            Value::Float64(1e300),
            Value::Float64(f64::NEG_INFINITY),
            Value::Bytes(vec![0, 0xab]),
        ] {
            sqlite_literal(&mut out, &v, ParamRef::new('?', 0)).unwrap();
            out.push(' ');
        }
        assert_eq!(out, "1e-1 1e300 (-9e999) X'00AB' ");
        assert!(
            sqlite_literal(
                &mut out,
                &Value::Date("2024-13-01".into()),
                ParamRef::new('?', 0)
            )
            .is_err()
        );
    }

    #[test]
    fn postgres_statements_keep_their_text_and_bind_literals() {
        let script = statement_script(
            Dialect::Postgres,
            "UPDATE t SET a = $1 WHERE id = $2 -- note",
            &[
                vec![t("x"), Value::Int64(1)],
                vec![Value::Null, Value::Int64(2)],
            ],
            "wasmig_c1",
        )
        .unwrap();
        assert_eq!(
            script,
            "PREPARE wasmig_c1(text, int8) AS UPDATE t SET a = $1 WHERE id = $2 -- note\n;\n\
             EXECUTE wasmig_c1(E'x', E'1');\nEXECUTE wasmig_c1(NULL, E'2');\nDEALLOCATE wasmig_c1;\n"
        );
        assert_eq!(
            statement_script(Dialect::Postgres, "DELETE FROM t;", &[vec![]], "n").unwrap(),
            "DELETE FROM t\n;\n"
        );
        let copy = copy_script(
            Dialect::Sqlite,
            "t",
            &["a".into(), "b c".into()],
            &[vec![Value::Int32(1), t("x")]],
            "c",
        )
        .unwrap();
        assert_eq!(
            copy,
            "INSERT INTO \"t\" (\"a\", \"b c\") VALUES (1, 'x');\n"
        );
    }
}

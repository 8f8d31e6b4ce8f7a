//! wasmig's own statements written out as SQL text instead of run, for `up --sql`: a
//! [`Driver`] that appends each statement, its parameters inlined as literals of the
//! dialect, to a script. Reads answer "nothing there" (the script is written for a database
//! nobody asked), so creating wasmig's tables writes every statement of the schema.

use async_trait::async_trait;
use chrono::SecondsFormat;
use wasmig_contract::Dialect;

use super::{Cell, Driver, Param, Statement, fill_placeholders};

/// A [`Driver`] that writes instead of running.
pub struct ScriptWriter {
    dialect: Dialect,
    /// The script so far.
    pub script: String,
}

impl ScriptWriter {
    /// An empty script for `dialect`.
    pub fn new(dialect: Dialect) -> Self {
        ScriptWriter {
            dialect,
            script: String::new(),
        }
    }
}

#[async_trait]
impl Driver for ScriptWriter {
    async fn execute(&mut self, statement: &Statement) -> Result<u64, sqlx::Error> {
        let sql = inline(statement, self.dialect)?;
        self.script.push_str(sql.trim());
        self.script.push_str(";\n");
        // What a real run's statement would report: one row written.
        Ok(1)
    }

    async fn fetch(&mut self, _statement: &Statement) -> Result<Vec<Vec<Cell>>, sqlx::Error> {
        Ok(Vec::new())
    }

    fn writes_for_later(&self) -> bool {
        true
    }

    async fn script(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        self.script.push_str(sql.trim());
        if !sql.trim_end().ends_with(';') {
            self.script.push(';');
        }
        self.script.push('\n');
        Ok(())
    }
}

/// `statement` with each `$n` outside quotes replaced by its parameter as a literal.
///
/// # Errors
/// A placeholder without a parameter, or a list on SQLite.
pub fn inline(statement: &Statement, dialect: Dialect) -> Result<String, sqlx::Error> {
    fill_placeholders(statement, |out, _, param| literal(out, param, dialect))
}

/// An RFC 3339 UTC time (`…T…Z`) as MySQL's `DATETIME` reads it: `YYYY-MM-DD HH:MM:SS.ffffff`.
fn param_time_mysql(rfc3339: &str) -> String {
    rfc3339.trim_end_matches('Z').replacen('T', " ", 1)
}

/// `param` as a literal a person can read: text quoted (PostgreSQL: an `E''` string, whose
/// only special characters, `\` and `'`, are escaped, whatever `standard_conforming_strings`
/// says), bytes in hex, times in RFC 3339 with microseconds.
fn literal(out: &mut String, param: &Param, dialect: Dialect) -> Result<(), sqlx::Error> {
    let text = |out: &mut String, t: &str| match dialect {
        Dialect::Postgres => {
            out.push_str("E'");
            out.push_str(&t.replace('\\', "\\\\").replace('\'', "\\'"));
            out.push('\'');
        }
        Dialect::Sqlite => {
            out.push('\'');
            out.push_str(&t.replace('\'', "''"));
            out.push('\'');
        }
        // In hexadecimal: a quote or backslash means the same under every `sql_mode`.
        Dialect::Mysql => out.push_str(&format!(
            "CONVERT(X'{}' USING utf8mb4)",
            hex::encode(t.as_bytes())
        )),
    };
    match param {
        Param::Text(None) | Param::Bytes(None) => out.push_str("NULL"),
        Param::Text(Some(t)) => text(out, t),
        Param::Int(i) => out.push_str(&format!("({i})")),
        Param::Bytes(Some(b)) => match dialect {
            Dialect::Postgres => out.push_str(&format!("decode('{}', 'hex')", hex::encode(b))),
            Dialect::Sqlite | Dialect::Mysql => out.push_str(&format!("X'{}'", hex::encode(b))),
        },
        Param::Time(t) => {
            let t = t.to_rfc3339_opts(SecondsFormat::Micros, true);
            match dialect {
                Dialect::Postgres => out.push_str(&format!("'{t}'::timestamptz")),
                Dialect::Sqlite => out.push_str(&format!("'{t}'")),
                Dialect::Mysql => {
                    let utc = param_time_mysql(&t);
                    out.push_str(&format!("CAST('{utc}' AS DATETIME(6))"));
                }
            }
        }
        Param::Texts(list) => {
            if dialect != Dialect::Postgres {
                return Err(sqlx::Error::Protocol(format!(
                    "{} has no arrays",
                    dialect.name()
                )));
            }
            out.push_str("ARRAY[");
            for (i, t) in list.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                text(out, t);
            }
            out.push_str("]::text[]");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_literals_outside_quotes_only() {
        let statement = Statement::new(
            "INSERT INTO \"t$1\" (a, b, c, d) VALUES ($1, $2, '$1', $3)".to_owned(),
            vec![
                Param::Text(Some("it's a \\ test".to_owned())),
                Param::Int(-5),
                Param::Bytes(Some(vec![0, 255].into())),
            ],
        );
        assert_eq!(
            inline(&statement, Dialect::Postgres).unwrap(),
            "INSERT INTO \"t$1\" (a, b, c, d) VALUES (E'it\\'s a \\\\ test', (-5), '$1', decode('00ff', 'hex'))"
        );
        assert_eq!(
            inline(&statement, Dialect::Sqlite).unwrap(),
            "INSERT INTO \"t$1\" (a, b, c, d) VALUES ('it''s a \\ test', (-5), '$1', X'00ff')"
        );
        let missing = Statement::new("SELECT $2".to_owned(), vec![Param::Int(1)]);
        assert!(inline(&missing, Dialect::Sqlite).is_err());
    }
}

//! The role a migration's SQL runs as (`role` in `wasmig.toml`): checked at connect, and
//! switched to and from around the migration's statements, so that the server refuses what
//! that role may not do, wasmig's own tables included, while wasmig's statements run as
//! the role it connected with.
//!
//! In a step's transaction (per-migration, batched, `--atomic`) the switch is `SET LOCAL
//! ROLE`, sent before the migration's first statement of the step ([`PgSession::enter_role`])
//! and undone by `SET LOCAL ROLE NONE` at the head of wasmig's guard, which precedes every
//! write of its tables ([`PgSession::leave_role`]); both end with the transaction anyway. A
//! savepoint a migration takes is taken after the switch, so rolling back to it keeps it.
//! A `transaction = "none"` script runs on a connection of its own that runs nothing of
//! wasmig's: there the switch is a plain `SET ROLE` before its first statement (a `SET
//! LOCAL` would last one statement), undone when the connection goes back to the pool
//! (`SET SESSION AUTHORIZATION DEFAULT` in its reset) or is closed.
//!
//! A migration cannot switch back itself: `SET ROLE`, `RESET ROLE`, `SET SESSION
//! AUTHORIZATION` and `set_config('role', …)` are refused while a role is set, in every mode
//! (`policy`), since PostgreSQL checks a `SET ROLE` against the session's user, not the
//! current role.
//!
//! Not here: which statements are refused (`policy`), the name's validation in
//! `wasmig.toml` (the `wasmig` crate).

use sqlx::{AssertSqlSafe, PgConnection, Row};
use wasmig_contract::SqlError;
use wasmig_plan::ConfigError;

use super::PgDatabase;
use super::codec::sql_error;
use super::session::{PgSession, ROLE_LEFT_STATE};
use crate::{DbError, SqlResult};

/// `name` as a quoted SQL identifier: exactly that role, whatever its case or characters.
pub(super) fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl PgDatabase {
    /// Runs the migrations' SQL as `role`, after checking on the server that the role
    /// exists and that the session's user may `SET ROLE` to it.
    ///
    /// # Errors
    /// [`ConfigError`] naming the role and what to run (`CREATE ROLE`, `GRANT`);
    /// [`DbError::Query`] when the server cannot answer.
    pub(crate) async fn set_role(&mut self, role: &str) -> anyhow::Result<()> {
        let right = {
            let conn: &mut PgConnection = &mut *self.control().await;
            // PostgreSQL 16 made SET a right of its own in a role membership.
            // Simple queries, values written in: nothing prepared, so they work through a
            // pooler in transaction mode too.
            let modern = sqlx::raw_sql("SELECT pg_catalog.current_setting('server_version_num')")
                .fetch_one(&mut *conn)
                .await
                .and_then(|row| row.try_get::<String, _>(0))
                .map(|v| v.parse::<u32>().unwrap_or(0) >= 160_000)
                .unwrap_or(false);
            let privilege = if modern { "SET" } else { "MEMBER" };
            sqlx::raw_sql(AssertSqlSafe(format!(
                "SELECT session_user::pg_catalog.text, \
                 (SELECT pg_catalog.pg_has_role(session_user, r.oid, '{privilege}') \
                  FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) {})",
                super::bookkeeping::lit(role)
            )))
            .fetch_one(&mut *conn)
            .await
            .and_then(|row| {
                Ok((
                    row.try_get::<String, _>(0)?,
                    row.try_get::<Option<bool>, _>(1)?,
                ))
            })
            .map_err(|source| DbError::Query {
                doing: format!("checking the role `{role}` (role in wasmig.toml)"),
                source,
            })?
        };
        let quoted_role = quoted(role);
        match right {
            (_, Some(true)) => {}
            (user, None) => {
                return Err(ConfigError::new(format!(
                    "the role `{role}` (role in wasmig.toml) does not exist on the server; create it and let `{user}` switch to it (CREATE ROLE {quoted_role} NOLOGIN; GRANT {quoted_role} TO {user}), or remove the setting"
                ))
                .into());
            }
            (user, Some(false)) => {
                return Err(ConfigError::new(format!(
                    "`{user}`, the role wasmig connects as, may not SET ROLE to `{role}` (role in wasmig.toml); run GRANT {quoted_role} TO {user}, or remove the setting"
                ))
                .into());
            }
        }
        self.role = Some(role.into());
        Ok(())
    }
}

impl PgSession {
    /// Switches the step's transaction to the migration's role, once, before the
    /// migration's statement (nothing without a `role`).
    pub(super) async fn enter_role(&mut self) -> SqlResult<()> {
        let Some(role) = self.role.clone() else {
            return Ok(());
        };
        if self.in_role {
            return Ok(());
        }
        self.run_script(format!("SET LOCAL ROLE {}", quoted(&role)))
            .await
            .map_err(|e| {
                SqlError::wasmig(
                    "STATE",
                    format!(
                        "wasmig could not switch to the role `{role}`: {}",
                        e.message
                    ),
                )
            })?;
        self.in_role = true;
        Ok(())
    }

    /// What wasmig's guard sends first to switch back to the role it connected as, when
    /// the migration's role is on (empty otherwise); the session is then out of it.
    ///
    /// First, the server's word that the migration's SQL is still running as the role: a
    /// switch the parser could not see (SQL built at run time in a trusted project, a
    /// function created earlier) fails the step ([`crate::RoleLeft`], exit 12).
    pub(super) fn leave_role(&mut self) -> String {
        if !std::mem::take(&mut self.in_role) {
            return String::new();
        }
        let Some(role) = self.role.as_deref() else {
            return String::new();
        };
        let literal = super::bookkeeping::lit(role);
        // A dollar quote the role's name does not contain.
        let tag = (0..)
            .map(|n| format!("$wasmig{n}$"))
            .find(|tag| !literal.contains(tag.as_str()))
            .expect("some tag is free");
        format!(
            "DO {tag} BEGIN IF current_user OPERATOR(pg_catalog.<>) {literal} THEN \
             RAISE EXCEPTION 'wasmig: the migration''s SQL left the role % it runs as (it runs as % now); nothing was recorded', \
             {literal}, current_user USING ERRCODE = '{ROLE_LEFT_STATE}'; END IF; END {tag};\n\
             SET LOCAL ROLE NONE;\n"
        )
    }
}

/// Switches a `transaction = "none"` script's connection to `role` for the session (the
/// pool's reset undoes it).
pub(super) async fn enter_for_session(conn: &mut PgConnection, role: &str) -> SqlResult<()> {
    sqlx::raw_sql(AssertSqlSafe(format!("SET ROLE {}", quoted(role))))
        .execute(conn)
        .await
        .map(drop)
        .map_err(sql_error)
}

#[cfg(test)]
mod tests {
    use super::quoted;

    #[test]
    fn a_role_name_is_quoted_whole() {
        assert_eq!(quoted("app_migrator"), "\"app_migrator\"");
        assert_eq!(
            quoted("App \"x\"; RESET ROLE"),
            "\"App \"\"x\"\"; RESET ROLE\""
        );
    }
}

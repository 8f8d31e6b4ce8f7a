//! The PostgreSQL backend's tests, against a real server (`WASMIG_TEST_POSTGRES_URL`,
//! by default `postgres://postgres@127.0.0.1:5432/postgres`), each in a database of its
//! own.
//!
//! Owns: the harness ([`TestDb`], [`admin_url`]) and the small helpers every test file
//! uses. Not here: the tests themselves, by topic: `fuzz` (the transaction-control check
//! against generated scripts), `qualified` (every name in wasmig's own SQL), `values`
//! (binding and decoding), `partitions` (claims and fences of a step's partitions),
//! `session` (statements, errors, cursors, savepoints, cancelling, the connection's
//! state), `version_tables` (creating the tables, finishing and recording steps).

mod fuzz;
mod lease;
mod partitions;
mod qualified;
mod session;
mod values;
mod version_tables;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use super::*;
use wasmig_contract::Value;

/// A server where the tests may create databases; override for another setup.
fn admin_url() -> String {
    std::env::var("WASMIG_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh database for one test, dropped (with its connections) when the test ends,
/// even by a panic.
struct TestDb {
    name: String,
    db: PgDatabase,
}

impl TestDb {
    async fn new() -> TestDb {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "wasmig_dbtest_{}_{}_{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let mut admin = PgConnection::connect(&admin_url())
            .await
            .expect("the test PostgreSQL server is reachable");
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        let _ = admin.close().await;
        let base = admin_url();
        let (server, _) = base.rsplit_once('/').unwrap();
        let url = DatabaseUrl::parse(&format!("{server}/{name}")).unwrap();
        TestDb {
            db: PgDatabase::connect(&url, None, false).await.unwrap(),
            name,
        }
    }

    async fn session(&self) -> Box<dyn Session> {
        self.db.begin().await.unwrap()
    }

    /// The URL of this database, as `user` (the admin URL's user by default).
    fn url_as(&self, user: Option<&str>) -> String {
        let base = admin_url();
        let (server, _) = base.rsplit_once('/').unwrap();
        match user {
            Some(user) => {
                let (scheme, rest) = server.split_once("://").unwrap();
                let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
                format!("{scheme}://{user}@{host}/{}", self.name)
            }
            None => format!("{server}/{}", self.name),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop cannot await: drop the database from a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(mut admin) = PgConnection::connect(&admin_url()).await {
                    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::raw_sql(AssertSqlSafe(drop)).execute(&mut admin).await;
                }
            });
        })
        .join();
    }
}

fn text(s: &str) -> String {
    s.to_owned()
}

fn some(items: &[&str]) -> Vec<Option<String>> {
    items
        .iter()
        .map(|s| if s.is_empty() { None } else { Some(text(s)) })
        .collect()
}

async fn scalar(session: &mut dyn Session, sql: &str, params: &[Value]) -> Value {
    let result = session.query(sql, params).await.unwrap();
    assert_eq!(result.rows.len(), 1, "{sql}");
    result.rows[0][0].clone()
}

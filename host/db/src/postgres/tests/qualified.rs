//! Every name in wasmig's own PostgreSQL statements is schema-qualified: relations by
//! wasmig's schema or `pg_catalog`, functions, operators and types by `pg_catalog`. A name
//! left to the session's `search_path` (or to its temporary schema, searched first for
//! relations and types) is one a migration can answer instead.
//!
//! Not a list kept by hand: the test records what sqlx really sends (its statement log,
//! captured with a `tracing` layer) while it drives the backend through what a run does,
//! parses each statement with PostgreSQL's own parser and walks the tree. A migration's
//! statements (marked `/* guest */` here) are not wasmig's and are left out. Not checked:
//! text inside PL/pgSQL bodies (`DO` blocks), which the parser keeps as a string.

use std::sync::{Arc, Mutex};

use chrono::Utc;
use pg_query::NodeRef;
use tracing_subscriber::layer::{Context, SubscriberExt};

use super::*;
use crate::{Checkpoint, Expected, FailedMark, FinishedStep, Policy, StepRecord, StoredArtifact};

/// Statements sqlx logged, as sent, with the thread that sent them: the subscriber is the
/// process's global one (a scoped one misses callsites other tests' threads reached first,
/// whose interest tracing cached without it), and each test keeps its own thread's.
#[derive(Clone, Default)]
struct Sent(Arc<Mutex<Vec<(std::thread::ThreadId, String)>>>);

/// The process's one recorder, installed on first use.
fn recorder() -> &'static Sent {
    static SENT: std::sync::OnceLock<Sent> = std::sync::OnceLock::new();
    SENT.get_or_init(|| {
        let sent = Sent::default();
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(sent.clone()))
            .expect("no other test installs a global subscriber");
        sent
    })
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Sent {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != "sqlx::query" {
            return;
        }
        #[derive(Default)]
        struct Fields {
            summary: String,
            statement: String,
        }
        impl tracing::field::Visit for Fields {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                match field.name() {
                    "summary" => self.summary = value.to_owned(),
                    "db.statement" => self.statement = value.to_owned(),
                    _ => {}
                }
            }
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.record_str(field, &format!("{value:?}"));
            }
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        // sqlx logs the whole text as `db.statement` when the summary is shorter.
        let text = if fields.statement.trim().is_empty() {
            fields.summary
        } else {
            fields.statement.trim().to_owned()
        };
        self.0
            .lock()
            .unwrap()
            .push((std::thread::current().id(), text));
    }
}

/// The unqualified names in one of wasmig's statements.
fn unqualified(sql: &str) -> Vec<String> {
    let parsed = pg_query::parse(sql, pg_query::ParserOptions::DEFAULT)
        .unwrap_or_else(|e| panic!("wasmig sent SQL PostgreSQL's parser cannot read ({e}): {sql}"));
    let nodes = parsed.protobuf.nodes();
    let ctes: Vec<&str> = nodes
        .iter()
        .filter_map(|(n, ..)| match n {
            NodeRef::CommonTableExpr(c) => Some(c.ctename.as_str()),
            _ => None,
        })
        .collect();
    let name = |parts: &[pg_query::protobuf::Node]| -> String {
        parts
            .iter()
            .filter_map(|p| match &p.node {
                Some(pg_query::NodeEnum::String(s)) => Some(s.sval.clone()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(".")
    };
    let mut found = Vec::new();
    for (node, ..) in &nodes {
        match node {
            NodeRef::RangeVar(r)
                if r.schemaname.is_empty() && !ctes.contains(&r.relname.as_str()) =>
            {
                found.push(format!("relation {}", r.relname));
            }
            NodeRef::FuncCall(f) if f.funcname.len() < 2 => {
                found.push(format!("function {}", name(&f.funcname)));
            }
            NodeRef::AExpr(e) if e.name.len() < 2 && !e.name.is_empty() => {
                // BETWEEN and its kin name a keyword, not an operator.
                let op = name(&e.name);
                if !op.chars().all(|c| c.is_ascii_alphabetic() || c == ' ') {
                    found.push(format!("operator {op}"));
                }
            }
            // Types of casts and of columns (the walk does not descend into them).
            NodeRef::TypeCast(c) => {
                if let Some(t) = &c.type_name
                    && t.names.len() < 2
                {
                    found.push(format!("type {}", name(&t.names)));
                }
            }
            NodeRef::ColumnDef(c) => {
                if let Some(t) = &c.type_name
                    && t.names.len() < 2
                {
                    found.push(format!("type {}", name(&t.names)));
                }
            }
            NodeRef::TypeName(t) if t.names.len() < 2 => {
                found.push(format!("type {}", name(&t.names)));
            }
            _ => {}
        }
    }
    found
}

#[test]
fn the_walker_finds_what_it_looks_for() {
    assert_eq!(
        unqualified(
            "WITH c AS (SELECT 1) SELECT now(), x::text FROM t, c \
             WHERE a = b AND d OPERATOR(pg_catalog.=) e AND f IS DISTINCT FROM g"
        ),
        [
            "relation t",
            "function now",
            "type text",
            "operator =",
            "operator =",
        ]
    );
    assert!(
        unqualified(
            "SELECT pg_catalog.now(), $1::pg_catalog.text[] FROM public.t \
             WHERE a OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.text[])"
        )
        .is_empty()
    );
}

/// Drives the backend through what runs do (connect, lock, create and read the tables,
/// steps finished, failed, batched and reset, a none-mode script, a second run waiting on
/// the lock) and returns every statement sqlx sent for wasmig.
async fn what_wasmig_sends(lock: crate::LockMode) -> Vec<String> {
    // The test's runtime is current-thread: every statement of this test is sent from here.
    let sent = recorder();
    let me = std::thread::current().id();

    let settings = crate::LockSettings {
        mode: lock,
        ..crate::LockSettings::default()
    };
    let mut t = TestDb::new().await;
    t.db.lock_settings = settings.clone();
    let lock = t.db.lock(Duration::from_secs(5)).await.unwrap();
    // A second run waiting for the lock, which names its holder.
    let other = PgDatabase::connect(&DatabaseUrl::parse(&t.url_as(None)).unwrap(), None, false)
        .await
        .unwrap()
        .with_lock(settings);
    assert!(other.lock(Duration::from_millis(300)).await.is_err());
    other.close().await;
    t.db.ensure_version_tables().await.unwrap();
    t.db.verify_tables().await.unwrap();
    t.db.heads().await.unwrap();
    t.db.history().await.unwrap();
    t.db.history_len().await.unwrap();
    t.db.failed().await.unwrap();
    t.db.checkpoints().await.unwrap();
    t.db.stored_artifact("a").await.unwrap();

    let now = Utc::now();
    let (none, a) = (Vec::<String>::new(), vec![text("a")]);
    let record = StepRecord {
        remove: &none,
        add: &a,
        revision: "a",
        direction: crate::Event::Upgrade,
        checksum: "c1",
        started_at: now,
        finished_at: now,
        error: None,
        sqlstate: None,
    };
    let stored = StoredArtifact {
        revision: "a".into(),
        kind: "sql".into(),
        checksum: "c1".into(),
        manifest: String::new(),
        up_sql: Some("SELECT 1".into()),
        down_sql: Some("SELECT 1".into()),
        component: None,
        source_checksum: None,
    };
    let expected = Expected::default();
    let mut s = t.session().await;
    s.set_timeouts(Some(Duration::from_secs(5)), Some(Duration::from_secs(5)))
        .await
        .unwrap();
    s.execute("/* guest */ CREATE TABLE guest_t (x int)", &[])
        .await
        .unwrap();
    s.batch("/* guest */ SELECT 1; SELECT 2").await.unwrap();
    s.set_timeouts(None, None).await.unwrap();
    assert!(s.transaction_intact().await.unwrap());
    let checkpoint = Checkpoint {
        revision: "a".into(),
        direction: crate::Direction::Upgrade,
        remove_heads: Vec::new(),
        add_heads: a.clone(),
        checkpoint: "{}".into(),
        batches: 1,
        checksum: "c1".into(),
        started_at: now,
        updated_at: now,
    };
    s.save_checkpoint(&checkpoint).await.unwrap();
    // As a batched step does: the checkpoint commits with its batch, and the record comes in
    // a later transaction (the tamper check refuses one that wrote the batch tables first).
    s.commit().await.unwrap();
    let mut s = t.session().await;
    s.finish_step(&FinishedStep {
        record: StepRecord { ..record },
        artifact: Some(&stored),
        clear_checkpoint: true,
        expected: Some(&expected),
    })
    .await
    .unwrap();
    s.reset_session().await.unwrap();
    s.commit().await.unwrap();

    // A SQL revision's script, with what its record needs sent after it in its message
    // (checked apart from the script: see `ours`), then the record.
    let mut s = t.session().await;
    s.batch_then_record("/* guest */ SELECT 3").await.unwrap();
    s.finish_step(&FinishedStep {
        record: StepRecord {
            remove: &a,
            add: &a,
            ..record
        },
        artifact: Some(&stored),
        clear_checkpoint: false,
        expected: Some(&expected.after(&none, &a)),
    })
    .await
    .unwrap();
    s.rollback().await.unwrap();

    let mut s = t.session().await;
    let mark = FailedMark {
        revision: "b".into(),
        direction: crate::Direction::Upgrade,
        remove_heads: a.clone(),
        add_heads: vec![text("b")],
        statement: 2,
        error: "boom".into(),
        sqlstate: Some("22012".into()),
        failed_at: now,
    };
    // A failed mark is written in a transaction of its own (a later check in the same
    // transaction would take it for the step's SQL writing it).
    s.set_failed(&mark).await.unwrap();
    s.rollback().await.unwrap();
    let mut s = t.session().await;
    s.clear_failed("b").await.unwrap();
    s.record_step(&StepRecord {
        remove: &a,
        add: &a,
        revision: "a",
        direction: crate::Event::Rehash,
        ..record
    })
    .await
    .unwrap();
    s.store_artifact(&stored).await.unwrap();
    s.forget_artifact("a").await.unwrap();
    s.forget_artifacts_except(&a).await.unwrap();
    s.clear_checkpoint("a").await.unwrap();
    s.rollback().await.unwrap();

    // A step that fails on the server, and one cancelled.
    let mut s = t.session().await;
    assert!(s.execute("/* guest */ SELECT 1 / 0", &[]).await.is_err());
    assert!(s.transaction_intact().await.unwrap());
    s.rollback().await.unwrap();
    let s = t.session().await;
    s.canceller().cancel().await;
    s.rollback().await.unwrap();

    // A `transaction = "none"` script.
    t.db.run_autocommit(
        "/* guest */ SELECT 1; SELECT 2",
        &Policy::TRUSTED,
        None,
        None,
    )
    .await
    .unwrap();
    lock.release().await.unwrap();
    t.db.close().await;
    sent.0
        .lock()
        .unwrap()
        .iter()
        .filter(|(thread, _)| *thread == me)
        .map(|(_, sql)| sql.clone())
        .collect()
}

#[tokio::test]
async fn every_name_in_wasmigs_own_statements_is_qualified() {
    // Under each kind of lock (`auto` finds the advisory lock on a direct connection).
    let mut sent = what_wasmig_sends(crate::LockMode::Auto).await;
    sent.extend(what_wasmig_sends(crate::LockMode::Lease).await);
    // A guest's script may carry wasmig's statements after it, on a line of their own
    // (`batch_then_record`): those are checked.
    let ours: Vec<&str> = sent
        .iter()
        .filter_map(|s| match s.split_once("/* guest */") {
            None => Some(s.as_str()),
            Some((_, guest)) => guest.split_once("\n;").map(|(_, ours)| ours),
        })
        // The harness's, not wasmig's.
        .filter(|s| !s.starts_with("CREATE DATABASE") && !s.starts_with("DROP DATABASE"))
        .collect();
    assert!(ours.len() > 20, "the log was captured: {sent:#?}");
    assert!(
        sent.iter()
            .any(|s| s.starts_with("/* guest */ SELECT 3\n;")),
        "a script carried wasmig's statements: {sent:#?}"
    );
    let mut findings = Vec::new();
    for sql in &ours {
        let names = unqualified(sql);
        if !names.is_empty() {
            findings.push(format!(
                "{}\n    in: {}",
                names.join(", "),
                sql.replace('\n', " ")
            ));
        }
    }
    eprintln!("measure: {} statements of wasmig's checked", ours.len());
    assert!(
        findings.is_empty(),
        "{} of wasmig's statements leave names to the search_path:\n{}",
        findings.len(),
        findings.join("\n")
    );
}

//! The lease lock against a real server: a run that recorded a step but has not committed
//! holds the lease's row, so a takeover waits; if that run stalls there, the server ends
//! its transaction after the lease (`idle_in_transaction_session_timeout`), the takeover
//! goes ahead, and the stalled step's commit fails with nothing recorded.

use chrono::Utc;

use super::*;
use crate::{Expected, FinishedStep, LockMode, LockSettings, StepRecord};

/// Lease settings with a short lease.
fn short_lease() -> LockSettings {
    LockSettings {
        mode: LockMode::Lease,
        lease: Duration::from_secs(1),
        source: "the test".into(),
        ..LockSettings::default()
    }
}

#[tokio::test]
async fn a_run_stalled_between_its_record_and_its_commit_cannot_hold_off_a_takeover() {
    let mut t = TestDb::new().await;
    t.db.lock_settings = short_lease();
    let lock = t.db.lock(Duration::from_secs(5)).await.unwrap();
    t.db.ensure_version_tables().await.unwrap();
    t.db.tables_ready().await.unwrap();

    // A step records (which locks the lease's row) and then stalls before its COMMIT.
    let now = Utc::now();
    let (none, a) = (Vec::<String>::new(), vec![text("a")]);
    let expected = Expected::default();
    let mut s = t.session().await;
    s.execute("CREATE TABLE stalled (x int)", &[])
        .await
        .unwrap();
    assert!(
        s.finish_step(&FinishedStep {
            record: StepRecord {
                remove: &none,
                add: &a,
                revision: "a",
                direction: crate::Event::Upgrade,
                checksum: "c1",
                started_at: now,
                finished_at: now,
                error: None,
                sqlstate: None,
            },
            artifact: None,
            clear_checkpoint: false,
            expected: Some(&expected),
        })
        .await
        .unwrap()
    );

    // Another run: it cannot take the row while the step holds it, nor the lease while it
    // is renewed; once the server ends the stalled transaction (after the lease, idle), the
    // lease lapses and the other run takes it over.
    let other = PgDatabase::connect(&DatabaseUrl::parse(&t.url_as(None)).unwrap(), None, false)
        .await
        .unwrap()
        .with_lock(short_lease());
    let taken = other.lock(Duration::from_secs(20)).await.unwrap();

    // The stalled step's commit fails, and it recorded nothing.
    assert!(s.commit().await.is_err(), "the stalled step committed");

    assert!(other.heads().await.unwrap().is_empty());
    let table: Option<String> =
        sqlx::raw_sql("SELECT pg_catalog.to_regclass('stalled')::pg_catalog.text")
            .fetch_one(&mut *other.control().await)
            .await
            .unwrap()
            .try_get(0)
            .unwrap();
    assert_eq!(table, None, "the stalled step's table was kept");

    // The first run finds its lease gone when it releases it.
    assert!(lock.release().await.is_err());
    taken.release().await.unwrap();
    other.close().await;
    t.db.close().await;
}

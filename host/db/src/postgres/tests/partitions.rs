//! The partitions of a batched step run by several workers, against a real server: claims
//! never wait on each other and never hand one partition to two workers; partition 0 runs
//! alone until its first batch commits; a worker whose lease ran out and whose partition was
//! taken over cannot commit a batch (its token is stale), while a worker in the middle of a
//! batch keeps its partition however long the batch takes.

use super::*;
use crate::Partition;

/// Creates the partitions of revision `p` over keys 1..=100 in four ranges.
async fn four_partitions(t: &TestDb) {
    t.db.ensure_version_tables().await.unwrap();
    let mut s = t.session().await;
    let (store, d) = s.books();
    store
        .create_partitions(d, "p", &Partition::ranges(4, Some((1, 100))))
        .await
        .unwrap();
    s.commit().await.unwrap();
}

async fn claim(t: &TestDb, owner: &str, lease_ms: i64) -> Option<Partition> {
    let mut reader = t.db.reader().await.unwrap();
    t.db.store()
        .claim_partition(reader.driver(), "p", owner, lease_ms)
        .await
        .unwrap()
}

/// A batch of `part` under `token`: fenced, then its checkpoint saved and committed.
/// `false`: the fence refused it.
async fn batch(t: &TestDb, part: i64, token: i64, next: Option<&str>, n: i64) -> bool {
    let mut s = t.session().await;
    let (store, d) = s.books();
    if !store.fence_partition(d, "p", part, token).await.unwrap() {
        s.rollback().await.unwrap();
        return false;
    }
    let (store, d) = s.books();
    store
        .save_partition(d, "p", (part, token), next, n, 60_000)
        .await
        .unwrap();
    s.commit().await.unwrap();
    true
}

#[tokio::test]
async fn partition_zero_runs_alone_until_its_first_batch_commits_then_each_goes_to_one_worker() {
    let t = TestDb::new().await;
    four_partitions(&t).await;
    let zero = claim(&t, "a", 60_000).await.unwrap();
    assert_eq!(zero.part, 0);
    assert_eq!(zero.checkpoint, Partition::seed(0, 4, i64::MIN, 25));
    // Partition 0 has not committed a batch: nothing else may start.
    assert_eq!(claim(&t, "b", 60_000).await, None);
    assert!(batch(&t, 0, zero.token, Some("k:1"), 1).await);
    let mut parts: Vec<i64> = Vec::new();
    for owner in ["b", "c", "d"] {
        parts.push(claim(&t, owner, 60_000).await.unwrap().part);
    }
    assert_eq!(parts, [1, 2, 3]);
    // All four held: nothing to claim.
    assert_eq!(claim(&t, "e", 60_000).await, None);
    let mut reader = t.db.reader().await.unwrap();
    let all = t.db.store().partitions(reader.driver(), "p").await.unwrap();
    drop(reader);
    assert!(all.iter().all(|p| p.held && !p.done), "{all:?}");
    assert_eq!(
        all.iter()
            .map(|p| (p.first_key, p.last_key))
            .collect::<Vec<_>>(),
        [(i64::MIN, 25), (26, 50), (51, 75), (76, i64::MAX)]
    );
}

#[tokio::test]
async fn a_worker_whose_lease_ran_out_and_was_taken_over_commits_nothing() {
    let t = TestDb::new().await;
    four_partitions(&t).await;
    let first = claim(&t, "slow", 1).await.unwrap();
    // Tokens start from the server's clock: partitions made again never reuse one.
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    assert!((first.token - since_epoch).abs() < 60_000_000, "{first:?}");
    tokio::time::sleep(Duration::from_millis(20)).await;
    // The lease ran out between batches: another worker takes it over, with a new token.
    let taken = claim(&t, "fast", 60_000).await.unwrap();
    assert_eq!((taken.part, taken.token), (0, first.token + 1));
    assert!(
        !batch(&t, 0, first.token, Some("k:9"), 1).await,
        "a stale token"
    );
    assert!(batch(&t, 0, taken.token, None, 1).await);
    let mut reader = t.db.reader().await.unwrap();
    let zero = &t.db.store().partitions(reader.driver(), "p").await.unwrap()[0];
    assert!(zero.done && !zero.held, "{zero:?}");
    assert_eq!(zero.checkpoint, Partition::seed(0, 4, i64::MIN, 25));
}

#[tokio::test]
async fn a_batch_under_way_keeps_its_partition_past_its_lease() {
    let t = TestDb::new().await;
    four_partitions(&t).await;
    let first = claim(&t, "slow", 1).await.unwrap();
    // The batch has begun: its row is locked until it ends.
    let mut s = t.session().await;
    let (store, d) = s.books();
    assert!(store.fence_partition(d, "p", 0, first.token).await.unwrap());
    tokio::time::sleep(Duration::from_millis(20)).await;
    // The lease ran out, but the claim skips the locked row rather than wait or take it.
    assert_eq!(claim(&t, "fast", 60_000).await, None);
    let (store, d) = s.books();
    store
        .save_partition(d, "p", (0, first.token), Some("k:5"), 1, 60_000)
        .await
        .unwrap();
    s.commit().await.unwrap();
    // Committed, and renewed: still its own.
    assert_eq!(claim(&t, "fast", 60_000).await.map(|p| p.part), Some(1));
    let mut reader = t.db.reader().await.unwrap();
    let store = t.db.store();
    assert_eq!(
        store
            .finish_partitions(reader.driver(), "p", 4)
            .await
            .unwrap(),
        4
    );
    // Fewer rows than the step was split into: something else deleted some.
    let err = store
        .finish_partitions(reader.driver(), "p", 5)
        .await
        .unwrap_err();
    assert!(err.is::<crate::TablesTampered>(), "{err:#}");
}

//! One conformance suite for the lease store, run against the in-memory fake and against
//! DynamoDB (dynalite): the fake must be exactly as strict as the table, or tests of the poll loop
//! over the fake would prove nothing. Time is passed explicitly (`now_ms`), never slept through.

// The suite's steps live outside `#[test]` fns, where clippy's test allowances do not reach.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kafka_esm::lease::{DynamoLeaseStore, Lease, LeaseError, LeaseStore, MemoryLeaseStore};
use kafka_esm::store::{LEASE_KEY, Tables, ensure_tables};
use kafka_esm_testkit::{Dynalite, sdk_config};

/// Any epoch-ms instant; the suite only moves forward from it.
const T: i64 = 1_700_000_000_000;
const TEN_S: Duration = Duration::from_secs(10);
const WAIT: Duration = Duration::from_secs(120);

fn new_mapping() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn lost(result: Result<impl std::fmt::Debug, LeaseError>, what: &str) {
    match result {
        Err(LeaseError::Lost { .. }) => {}
        other => panic!("{what}: expected Lost, got {other:?}"),
    }
}

/// The one lease of `mapping` on topic `t`, partition `partition`, as stored now.
async fn read<S: LeaseStore>(store: &S, mapping: &str, partition: i32) -> Lease {
    store
        .leases(mapping)
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.topic == "t" && l.partition == partition)
        .unwrap_or_else(|| panic!("lease {mapping}/t/{partition} not listed"))
}

async fn conformance<S: LeaseStore>(store: &S) {
    ensure_is_idempotent_and_creates_free_leases(store).await;
    leases_lists_only_that_mappings(store).await;
    exactly_one_of_two_racing_owners_wins(store).await;
    a_held_lease_cannot_be_taken_until_it_expires(store).await;
    only_the_holder_at_the_current_counter_can_renew_or_release(store).await;
    every_write_bumps_the_counter(store).await;
    release_frees_the_lease_at_once(store).await;
    heartbeats_count_only_live_pollers(store).await;
    delete_mapping_removes_all_its_leases(store).await;
}

async fn ensure_is_idempotent_and_creates_free_leases<S: LeaseStore>(store: &S) {
    let m = new_mapping();
    store.ensure(&m, "t", 0).await.unwrap();
    store.ensure(&m, "t", 0).await.unwrap();
    let free = Lease { mapping: m.clone(), topic: "t".into(), partition: 0, owner: None, expires_at_ms: 0, counter: 0 };
    assert_eq!(store.leases(&m).await.unwrap(), vec![free.clone()]);

    // Once taken, ensure leaves it alone.
    let held = store.acquire(&free, "a", T, TEN_S).await.unwrap();
    store.ensure(&m, "t", 0).await.unwrap();
    assert_eq!(store.leases(&m).await.unwrap(), vec![held]);

    // A lease nobody ensured cannot be acquired (the write must not create it).
    let missing = Lease { partition: 99, ..free };
    lost(store.acquire(&missing, "a", T, TEN_S).await, "acquire of a missing lease");
    assert_eq!(store.leases(&m).await.unwrap().len(), 1);
}

async fn leases_lists_only_that_mappings<S: LeaseStore>(store: &S) {
    let m = new_mapping();
    // Shares `m` as a string prefix: the `#` after the UUID in the key must keep them apart.
    let longer = format!("{m}0");
    let other = new_mapping();
    for p in [2, 0, 1] {
        store.ensure(&m, "t", p).await.unwrap();
    }
    store.ensure(&m, "a-topic", 0).await.unwrap();
    store.ensure(&longer, "t", 0).await.unwrap();
    store.ensure(&other, "t", 0).await.unwrap();
    store.heartbeat("poller-x", T, TEN_S).await.unwrap();

    let listed: Vec<(String, String, i32)> =
        store.leases(&m).await.unwrap().into_iter().map(|l| (l.mapping, l.topic, l.partition)).collect();
    let expected: Vec<(String, String, i32)> =
        [("a-topic", 0), ("t", 0), ("t", 1), ("t", 2)].into_iter().map(|(t, p)| (m.clone(), t.to_owned(), p)).collect();
    assert_eq!(listed, expected, "sorted by topic and partition");
    assert_eq!(store.leases(&longer).await.unwrap().len(), 1);
    assert!(store.leases(&new_mapping()).await.unwrap().is_empty());
    store.remove_poller("poller-x").await.unwrap();
}

async fn exactly_one_of_two_racing_owners_wins<S: LeaseStore>(store: &S) {
    let m = new_mapping();
    for p in 0..20 {
        store.ensure(&m, "t", p).await.unwrap();
        let free = read(store, &m, p).await;
        let (a, b) = tokio::join!(store.acquire(&free, "a", T, TEN_S), store.acquire(&free, "b", T, TEN_S));
        let (winner, loser) = match (a, b) {
            (Ok(won), Err(LeaseError::Lost { .. })) => (won, "b"),
            (Err(LeaseError::Lost { .. }), Ok(won)) => (won, "a"),
            other => panic!("round {p}: expected exactly one winner, got {other:?}"),
        };
        assert_ne!(winner.owner.as_deref(), Some(loser));
        assert_eq!(winner.counter, 1);
        assert_eq!(winner.expires_at_ms, T + 10_000);
        assert_eq!(read(store, &m, p).await, winner, "round {p}: stored as returned");

        // Again once it expired, one racer's clock far ahead of the other's: the winner's fresh
        // expiry is in the past for that clock, so only the counter stops the second taker.
        let expired = read(store, &m, p).await;
        let late = expired.expires_at_ms + 1;
        let (c, d) =
            tokio::join!(store.acquire(&expired, "c", late, TEN_S), store.acquire(&expired, "d", late + 60_000, TEN_S));
        match (c, d) {
            (Ok(won), Err(LeaseError::Lost { .. })) | (Err(LeaseError::Lost { .. }), Ok(won)) => {
                assert_eq!(won.counter, 2);
                assert_eq!(read(store, &m, p).await, won);
            }
            other => panic!("round {p}, expired: expected exactly one winner, got {other:?}"),
        }
    }
}

async fn a_held_lease_cannot_be_taken_until_it_expires<S: LeaseStore>(store: &S) {
    let m = new_mapping();
    store.ensure(&m, "t", 0).await.unwrap();
    let a = store.acquire(&read(store, &m, 0).await, "a", T, TEN_S).await.unwrap();
    let expiry = a.expires_at_ms;

    // b reads the current lease (so the counter matches) but it is held and unexpired.
    for now in [T, T + 5_000, expiry] {
        lost(
            store.acquire(&read(store, &m, 0).await, "b", now, TEN_S).await,
            &format!("acquire of a held lease at expiry{:+} ms", now - expiry),
        );
    }
    // The same owner cannot re-acquire either: holders renew.
    lost(store.acquire(&a, "a", T + 1, TEN_S).await, "re-acquire by the holder");

    // Past expiry it is b's; a's lease (and its counter) is stale.
    let b = store.acquire(&read(store, &m, 0).await, "b", expiry + 1, TEN_S).await.unwrap();
    assert_eq!(b.owner.as_deref(), Some("b"));
    assert_eq!(b.counter, a.counter + 1);
    assert_eq!(b.expires_at_ms, expiry + 1 + 10_000);
    lost(store.renew(&a, "a", expiry + 2, TEN_S).await, "renew by the old owner");
    lost(store.release(&a, "a").await, "release by the old owner");
    // Even with the current counter, a is not the owner.
    lost(store.renew(&b, "a", expiry + 2, TEN_S).await, "renew by the old owner, fresh counter");
    lost(store.release(&b, "a").await, "release by the old owner, fresh counter");
    assert_eq!(read(store, &m, 0).await, b, "failed writes change nothing");

    // c read the lease, then b renewed it; c's copy is stale even once both expiries passed.
    let seen_by_c = read(store, &m, 0).await;
    let b2 = store.renew(&b, "b", expiry + 3_000, TEN_S).await.unwrap();
    lost(store.acquire(&seen_by_c, "c", b2.expires_at_ms + 1, TEN_S).await, "acquire with a stale counter");
}

async fn only_the_holder_at_the_current_counter_can_renew_or_release<S: LeaseStore>(store: &S) {
    let m = new_mapping();
    store.ensure(&m, "t", 0).await.unwrap();
    let free = read(store, &m, 0).await;
    lost(store.renew(&free, "a", T, TEN_S).await, "renew of a free lease");
    lost(store.release(&free, "a").await, "release of a free lease");

    let a1 = store.acquire(&free, "a", T, TEN_S).await.unwrap();
    lost(store.renew(&a1, "c", T + 1, TEN_S).await, "renew by a non-owner");
    lost(store.release(&a1, "c").await, "release by a non-owner");

    let a2 = store.renew(&a1, "a", T + 3_000, TEN_S).await.unwrap();
    assert_eq!(a2.expires_at_ms, T + 13_000);
    lost(store.renew(&a1, "a", T + 4_000, TEN_S).await, "renew with a stale counter");
    lost(store.release(&a1, "a").await, "release with a stale counter");

    // As in KCL, an expired lease nobody took can still be renewed by its holder.
    let a3 = store.renew(&a2, "a", T + 60_000, TEN_S).await.unwrap();
    assert_eq!(a3.owner.as_deref(), Some("a"));
    assert_eq!(a3.expires_at_ms, T + 70_000);
}

async fn every_write_bumps_the_counter<S: LeaseStore>(store: &S) {
    let m = new_mapping();
    store.ensure(&m, "t", 0).await.unwrap();
    let mut lease = read(store, &m, 0).await;
    assert_eq!(lease.counter, 0);

    lease = store.acquire(&lease, "a", T, TEN_S).await.unwrap();
    assert_eq!(lease.counter, 1);
    for i in 1..=3 {
        lease = store.renew(&lease, "a", T + i * 1_000, TEN_S).await.unwrap();
        assert_eq!(lease.counter, 1 + u64::try_from(i).unwrap());
        assert_eq!(read(store, &m, 0).await, lease);
    }
    store.release(&lease, "a").await.unwrap();
    let released = read(store, &m, 0).await;
    assert_eq!(released.counter, 5);
    let b = store.acquire(&released, "b", T + 4_000, TEN_S).await.unwrap();
    assert_eq!(b.counter, 6);
}

async fn release_frees_the_lease_at_once<S: LeaseStore>(store: &S) {
    let m = new_mapping();
    store.ensure(&m, "t", 0).await.unwrap();
    let a = store.acquire(&read(store, &m, 0).await, "a", T, TEN_S).await.unwrap();
    store.release(&a, "a").await.unwrap();
    let released = read(store, &m, 0).await;
    assert_eq!(released.owner, None);
    assert_eq!(released.expires_at_ms, 0);

    // Long before a's expiry, b takes it.
    let b = store.acquire(&released, "b", T + 1, TEN_S).await.unwrap();
    assert_eq!(b.owner.as_deref(), Some("b"));
    lost(store.renew(&a, "a", T + 2, TEN_S).await, "renew after release");
}

async fn heartbeats_count_only_live_pollers<S: LeaseStore>(store: &S) {
    assert!(store.live_pollers(T).await.unwrap().is_empty());
    store.heartbeat("p1", T, TEN_S).await.unwrap();
    store.heartbeat("p2", T, Duration::from_secs(1)).await.unwrap();
    store.heartbeat("p3", T, TEN_S).await.unwrap();
    // Leases of some mapping share the table; they are not pollers.
    store.ensure(&new_mapping(), "t", 0).await.unwrap();

    assert_eq!(store.live_pollers(T).await.unwrap(), ["p1", "p2", "p3"]);
    assert_eq!(store.live_pollers(T + 1_000).await.unwrap(), ["p1", "p2", "p3"], "live up to and including its expiry");
    assert_eq!(store.live_pollers(T + 1_001).await.unwrap(), ["p1", "p3"]);

    store.remove_poller("p3").await.unwrap();
    store.remove_poller("never-there").await.unwrap();
    assert_eq!(store.live_pollers(T + 5_000).await.unwrap(), ["p1"]);

    // A refreshed heartbeat makes p2 live again; refreshing moves the expiry forward.
    store.heartbeat("p2", T + 5_000, TEN_S).await.unwrap();
    store.heartbeat("p1", T + 5_000, TEN_S).await.unwrap();
    assert_eq!(store.live_pollers(T + 14_000).await.unwrap(), ["p1", "p2"]);
    assert!(store.live_pollers(T + 15_001).await.unwrap().is_empty());
    for p in ["p1", "p2"] {
        store.remove_poller(p).await.unwrap();
    }
}

async fn delete_mapping_removes_all_its_leases<S: LeaseStore>(store: &S) {
    let m = new_mapping();
    let other = new_mapping();
    // More than one BatchWriteItem's worth (25).
    for p in 0..30 {
        store.ensure(&m, "t", p).await.unwrap();
    }
    store.ensure(&other, "t", 0).await.unwrap();
    store.heartbeat("survivor", T, TEN_S).await.unwrap();
    let held = store.acquire(&read(store, &m, 7).await, "a", T, TEN_S).await.unwrap();

    store.delete_mapping(&m).await.unwrap();
    assert!(store.leases(&m).await.unwrap().is_empty());
    assert_eq!(store.leases(&other).await.unwrap().len(), 1);
    assert_eq!(store.live_pollers(T).await.unwrap(), ["survivor"]);
    // A holder learns on its next write; nothing recreates the item behind its back.
    lost(store.renew(&held, "a", T + 1, TEN_S).await, "renew after delete");
    assert!(store.leases(&m).await.unwrap().is_empty());
    store.delete_mapping(&m).await.unwrap();
    store.remove_poller("survivor").await.unwrap();
}

#[tokio::test]
async fn memory_store_conforms() {
    let store = MemoryLeaseStore::default();
    tokio::time::timeout(WAIT, conformance(&store)).await.expect("suite finishes in time");
}

#[tokio::test]
async fn memory_store_fails_on_demand_without_changing_anything() {
    let store = MemoryLeaseStore::default();
    let m = new_mapping();
    store.ensure(&m, "t", 0).await.unwrap();
    let free = read(&store, &m, 0).await;
    store.fail_next(2);
    assert!(matches!(store.acquire(&free, "a", T, TEN_S).await, Err(LeaseError::Dynamo { .. })));
    assert!(matches!(store.leases(&m).await, Err(LeaseError::Dynamo { .. })));
    assert_eq!(read(&store, &m, 0).await, free);
    store.acquire(&free, "a", T, TEN_S).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamo_store_conforms() {
    let dynalite = tokio::task::spawn_blocking(Dynalite::start)
        .await
        .unwrap()
        .expect("start dynalite (scripts/install-deps.sh installs it)");
    let sdk = sdk_config(&dynalite.endpoint).await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let tables = Tables { mappings: format!("mappings-{suffix}"), leases: format!("leases-{suffix}") };
    tokio::time::timeout(WAIT, ensure_tables(&client, &tables))
        .await
        .expect("tables created in time")
        .expect("create tables");
    let store = DynamoLeaseStore::from_sdk(&sdk, &tables.leases);
    tokio::time::timeout(WAIT, conformance(&store)).await.expect("suite finishes in time");

    // A hand-written item under the mapping's prefix is reported, not skipped.
    let m = new_mapping();
    store.ensure(&m, "t", 0).await.unwrap();
    client
        .put_item()
        .table_name(&tables.leases)
        .item(LEASE_KEY, aws_sdk_dynamodb::types::AttributeValue::S(format!("lease#{m}#t#1")))
        .item("Topic", aws_sdk_dynamodb::types::AttributeValue::S("t".into()))
        .send()
        .await
        .unwrap();
    match store.leases(&m).await {
        Err(LeaseError::Malformed { key, message }) => {
            assert_eq!(key, format!("lease#{m}#t#1"));
            assert!(message.contains("is missing"), "{message}");
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
    // delete_mapping needs only the keys, so it clears malformed items too.
    store.delete_mapping(&m).await.unwrap();
    assert!(store.leases(&m).await.unwrap().is_empty());
}

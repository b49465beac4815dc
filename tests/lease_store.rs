//! One conformance suite for the lease store, run against the in-memory fake and against
//! DynamoDB (dynalite): the fake must be exactly as strict as the table, or the in-process tests
//! of the control plane (`control_plane.rs`) would prove nothing.
//!
//! The steps share one store (one table), so each names its mappings and pollers afresh and looks
//! only at its own.

// The suite's steps live outside `#[test]` fns, where clippy's test allowances do not reach.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use kafka_esm::aws::leases::{DynamoLeaseStore, LEASE_KEY};
use kafka_esm::aws::mappings::ensure_tables;
use kafka_esm::config::Tables;
use kafka_esm::coordination::leases::{Grants, Heartbeat, Lease, LeaseError, LeaseId, LeaseStore, Load, PollerInfo};
use kafka_esm::testing::MemoryLeaseStore;
use kafka_esm_testkit::{Dynalite, sdk_config};

const WAIT: Duration = Duration::from_secs(120);

fn new_mapping() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A fresh poller id.
fn new_poller() -> String {
    format!("poller-{}", uuid::Uuid::new_v4().simple())
}

fn lost(result: Result<impl std::fmt::Debug, LeaseError>, what: &str) {
    match result {
        Err(LeaseError::Lost { .. }) => {}
        other => panic!("{what}: expected Lost, got {other:?}"),
    }
}

fn id(mapping: &str, partition: i32) -> LeaseId {
    LeaseId::new(mapping, "t", partition)
}

/// The lease of `mapping` on topic `t`, partition `partition`, as stored now.
async fn read<S: LeaseStore>(store: &S, mapping: &str, partition: i32) -> Lease {
    store
        .snapshot()
        .await
        .unwrap()
        .of(mapping)
        .leases
        .into_iter()
        .find(|l| l.id == id(mapping, partition))
        .unwrap_or_else(|| panic!("lease {mapping}/t-{partition} not listed"))
}

async fn poller<S: LeaseStore>(store: &S, id: &str) -> Option<PollerInfo> {
    store.snapshot().await.unwrap().pollers.into_iter().find(|p| p.id == id)
}

fn beat(expires_at_ms: i64, held: u32) -> Heartbeat {
    Heartbeat { expires_at_ms, load: Load { held, lag: 7, stopping: false } }
}

async fn conformance<S: LeaseStore>(store: &S) {
    ensure_is_idempotent_and_never_resets_a_lease(store).await;
    acquire_of_a_missing_lease_is_lost_and_creates_nothing(store).await;
    a_snapshot_lists_each_mappings_leases_sorted(store).await;
    exactly_one_of_two_racing_acquirers_wins(store).await;
    acquire_with_a_stale_counter_is_lost(store).await;
    only_the_holder_at_the_current_counter_can_release(store).await;
    registering_twice_is_lost_and_a_removed_poller_cannot_heartbeat_back(store).await;
    heartbeats_move_the_counter_and_carry_load(store).await;
    a_dead_poller_is_removed_only_if_it_has_not_moved(store).await;
    delete_mapping_removes_all_its_leases_and_nothing_else(store).await;
    an_offset_reset_is_pending_until_its_holder_marks_it_applied(store).await;
    grants_are_written_only_over_the_counter_read_and_deleted_with_the_mapping(store).await;
    a_fenced_release_leaves_the_fence_for_the_next_taker_and_taking_clears_it(store).await;
}

async fn a_fenced_release_leaves_the_fence_for_the_next_taker_and_taking_clears_it<S: LeaseStore>(store: &S) {
    let m = new_mapping();
    store.ensure(&id(&m, 0), false).await.unwrap();
    let held = store.acquire(&read(store, &m, 0).await, "x").await.unwrap();
    assert_eq!(held.fence_ms, None);
    lost(store.release_fenced(&held, "y", Duration::from_secs(9)).await, "a fenced release by a non-holder");
    store.release_fenced(&held, "x", Duration::from_millis(42_500)).await.unwrap();
    let free = read(store, &m, 0).await;
    assert_eq!((free.owner.as_deref(), free.fence_ms, free.counter), (None, Some(42_500), held.counter + 1));
    let taken = store.acquire(&free, "y").await.unwrap();
    assert_eq!(taken.fence_ms, None);
    assert_eq!(read(store, &m, 0).await.fence_ms, None, "taking the lease clears the fence");
}

async fn grants_are_written_only_over_the_counter_read_and_deleted_with_the_mapping<S: LeaseStore>(store: &S) {
    let mapping = new_mapping();
    let (a, b) = (new_poller(), new_poller());
    assert_eq!(store.grants(&mapping).await.unwrap(), Grants::default(), "none yet: counter 0");
    let first = Grants {
        counter: 0,
        granted: [(a.clone(), 3)].into(),
        wanted: [(a.clone(), 4), (b.clone(), 2)].into(),
        served: [(a.clone(), 1)].into(),
    };
    assert_eq!(store.write_grants(&mapping, &first).await.unwrap(), 1);
    // A second creator (it also read counter 0) loses.
    lost(store.write_grants(&mapping, &first).await, "a second write over counter 0");
    let read = store.grants(&mapping).await.unwrap();
    assert_eq!(read, Grants { counter: 1, ..first.clone() });
    let second = Grants { granted: [(a.clone(), 2), (b.clone(), 1)].into(), ..read.clone() };
    assert_eq!(store.write_grants(&mapping, &second).await.unwrap(), 2);
    // A writer that read counter 1 before that write loses, and changes nothing.
    lost(store.write_grants(&mapping, &read).await, "a write over a stale counter");
    assert_eq!(store.grants(&mapping).await.unwrap(), Grants { counter: 2, ..second });
    // Empty maps are stored as empty maps.
    let empty = Grants { counter: 2, granted: [].into(), wanted: [].into(), served: [].into() };
    assert_eq!(store.write_grants(&mapping, &empty).await.unwrap(), 3);
    assert_eq!(store.grants(&mapping).await.unwrap(), Grants { counter: 3, ..empty });
    store.delete_mapping(&mapping).await.unwrap();
    assert_eq!(store.grants(&mapping).await.unwrap(), Grants::default());
}

async fn an_offset_reset_is_pending_until_its_holder_marks_it_applied<S: LeaseStore>(store: &S) {
    let m = new_mapping();
    lost(store.request_reset(&id(&m, 0), "r1", 5).await, "request on a missing lease");
    store.ensure(&id(&m, 0), false).await.unwrap();
    store.ensure(&id(&m, 1), false).await.unwrap();
    let free = read(store, &m, 0).await;
    store.request_reset(&id(&m, 0), "r1", 5).await.unwrap();
    let pending = |s: kafka_esm::coordination::leases::Snapshot| {
        s.of(&m).resets.into_iter().map(|r| (r.id.partition, r.request, r.offset)).collect::<Vec<_>>()
    };
    assert_eq!(pending(store.snapshot().await.unwrap()), [(0, "r1".to_owned(), 5)]);
    // The request does not move the counter: the holder keeps its lease.
    assert_eq!(read(store, &m, 0).await.counter, free.counter);
    let (a, b) = (new_poller(), new_poller());
    let held = store.acquire(&free, &a).await.unwrap();
    lost(store.reset_applied(&held, &b, "r1").await, "applied by someone else");
    lost(store.reset_applied(&free, &a, "r1").await, "applied at a stale counter");
    lost(store.reset_applied(&held, &a, "r0").await, "applied for another request");
    store.reset_applied(&held, &a, "r1").await.unwrap();
    assert!(pending(store.snapshot().await.unwrap()).is_empty());
    // A new request is pending again, and replaces an unapplied one.
    store.request_reset(&id(&m, 0), "r2", 0).await.unwrap();
    store.request_reset(&id(&m, 0), "r3", 1).await.unwrap();
    assert_eq!(pending(store.snapshot().await.unwrap()), [(0, "r3".to_owned(), 1)]);
    store.delete_mapping(&m).await.unwrap();
    assert!(pending(store.snapshot().await.unwrap()).is_empty());
}

async fn ensure_is_idempotent_and_never_resets_a_lease<S: LeaseStore>(store: &S) {
    let m = new_mapping();
    store.ensure(&id(&m, 0), false).await.unwrap();
    let free = read(store, &m, 0).await;
    assert_eq!((free.owner.clone(), free.counter, free.from_earliest), (None, 0, false));
    let held = store.acquire(&free, "a").await.unwrap();
    store.ensure(&id(&m, 0), true).await.unwrap();
    assert_eq!(read(store, &m, 0).await, held, "ensure left the existing lease alone");
    store.ensure(&id(&m, 1), true).await.unwrap();
    assert!(read(store, &m, 1).await.from_earliest, "a partition added later starts from earliest");
}

async fn acquire_of_a_missing_lease_is_lost_and_creates_nothing<S: LeaseStore>(store: &S) {
    let m = new_mapping();
    let ghost = Lease { id: id(&m, 0), owner: None, counter: 0, from_earliest: false, fence_ms: None };
    lost(store.acquire(&ghost, "a").await, "acquire of a missing lease");
    assert!(store.snapshot().await.unwrap().of(&m).leases.is_empty());
}

async fn a_snapshot_lists_each_mappings_leases_sorted<S: LeaseStore>(store: &S) {
    let (a, b) = (new_mapping(), new_mapping());
    for p in [10, 2, 1] {
        store.ensure(&id(&a, p), false).await.unwrap();
    }
    store.ensure(&id(&b, 0), false).await.unwrap();
    let snapshot = store.snapshot().await.unwrap();
    let parts: Vec<i32> = snapshot.of(&a).leases.iter().map(|l| l.id.partition).collect();
    assert_eq!(parts, [1, 2, 10]);
    assert_eq!(snapshot.of(&b).leases.len(), 1);
    assert!(snapshot.of(&a).malformed.is_empty());
}

async fn exactly_one_of_two_racing_acquirers_wins<S: LeaseStore>(store: &S) {
    let m = new_mapping();
    store.ensure(&id(&m, 0), false).await.unwrap();
    let free = read(store, &m, 0).await;
    let (x, y) = tokio::join!(store.acquire(&free, "x"), store.acquire(&free, "y"));
    let winners = [x.is_ok(), y.is_ok()].iter().filter(|w| **w).count();
    assert_eq!(winners, 1, "{x:?} {y:?}");
    let stored = read(store, &m, 0).await;
    assert_eq!(stored.counter, 1);
    assert!(stored.owner.as_deref() == Some("x") || stored.owner.as_deref() == Some("y"));
}

async fn acquire_with_a_stale_counter_is_lost<S: LeaseStore>(store: &S) {
    let m = new_mapping();
    store.ensure(&id(&m, 0), false).await.unwrap();
    let free = read(store, &m, 0).await;
    let held = store.acquire(&free, "a").await.unwrap();
    store.release(&held, "a").await.unwrap();
    lost(store.acquire(&free, "b").await, "acquire with the counter read before two writes");
    let now = read(store, &m, 0).await;
    assert_eq!((now.owner, now.counter), (None, 2));
}

async fn only_the_holder_at_the_current_counter_can_release<S: LeaseStore>(store: &S) {
    let m = new_mapping();
    store.ensure(&id(&m, 0), false).await.unwrap();
    let held = store.acquire(&read(store, &m, 0).await, "a").await.unwrap();
    lost(store.release(&held, "b").await, "release by someone else");
    let stale = Lease { counter: held.counter - 1, ..held.clone() };
    lost(store.release(&stale, "a").await, "release with a stale counter");
    store.release(&held, "a").await.unwrap();
    lost(store.release(&held, "a").await, "release twice");
    assert_eq!(read(store, &m, 0).await.owner, None);
}

async fn registering_twice_is_lost_and_a_removed_poller_cannot_heartbeat_back<S: LeaseStore>(store: &S) {
    let p = new_poller();
    lost(store.heartbeat(&p, beat(1, 0)).await, "heartbeat before registering");
    assert!(poller(store, &p).await.is_none(), "a heartbeat never creates the item");
    store.register(&p, beat(1, 0)).await.unwrap();
    lost(store.register(&p, beat(2, 0)).await, "register an existing id");
    store.remove_poller(&p).await.unwrap();
    store.remove_poller(&p).await.unwrap();
    lost(store.heartbeat(&p, beat(3, 0)).await, "heartbeat of a removed poller");
    assert!(poller(store, &p).await.is_none(), "a removed poller stays removed");
}

async fn heartbeats_move_the_counter_and_carry_load<S: LeaseStore>(store: &S) {
    let p = new_poller();
    store.register(&p, beat(1_000, 0)).await.unwrap();
    let first = poller(store, &p).await.unwrap();
    store.heartbeat(&p, beat(2_000, 3)).await.unwrap();
    let second = poller(store, &p).await.unwrap();
    assert!(second.counter > first.counter, "{first:?} → {second:?}");
    assert_eq!((second.expires_at_ms, second.load), (2_000, Load { held: 3, lag: 7, stopping: false }));
    store.remove_poller(&p).await.unwrap();
}

async fn a_dead_poller_is_removed_only_if_it_has_not_moved<S: LeaseStore>(store: &S) {
    let p = new_poller();
    store.register(&p, beat(1, 0)).await.unwrap();
    let seen = poller(store, &p).await.unwrap();
    store.heartbeat(&p, beat(2, 0)).await.unwrap();
    lost(store.remove_dead_poller(&seen).await, "remove a poller that moved since it was read");
    assert!(poller(store, &p).await.is_some());
    let now = poller(store, &p).await.unwrap();
    store.remove_dead_poller(&now).await.unwrap();
    assert!(poller(store, &p).await.is_none());
}

async fn delete_mapping_removes_all_its_leases_and_nothing_else<S: LeaseStore>(store: &S) {
    let (m, other) = (new_mapping(), new_mapping());
    for p in 0..3 {
        store.ensure(&id(&m, p), false).await.unwrap();
    }
    store.ensure(&id(&other, 0), false).await.unwrap();
    let other_before = store.snapshot().await.unwrap().of(&other);
    store.delete_mapping(&m).await.unwrap();
    store.delete_mapping(&new_mapping()).await.unwrap();
    let snapshot = store.snapshot().await.unwrap();
    assert!(snapshot.of(&m).leases.is_empty());
    assert_eq!(snapshot.of(&other), other_before);
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
    store.ensure(&id(&m, 0), false).await.unwrap();
    let free = read(&store, &m, 0).await;
    store.fail_next(2);
    assert!(matches!(store.acquire(&free, "a").await, Err(LeaseError::Dynamo { .. })));
    assert!(matches!(store.snapshot().await, Err(LeaseError::Dynamo { .. })));
    assert_eq!(read(&store, &m, 0).await, free);
    store.acquire(&free, "a").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamo_store_conforms_and_reports_malformed_items_without_hiding_the_others() {
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
    let store = DynamoLeaseStore::new(client.clone(), &tables.leases);
    tokio::time::timeout(WAIT, conformance(&store)).await.expect("suite finishes in time");

    // A hand-written item under a mapping's prefix is reported with its partition; the mapping's
    // other leases still parse.
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let m = new_mapping();
    store.ensure(&id(&m, 0), false).await.unwrap();
    let bad_key = format!("lease#{m}#t#1");
    client
        .put_item()
        .table_name(&tables.leases)
        .item(LEASE_KEY, s(&bad_key))
        .item("MappingUuid", s(&m))
        .item("Topic", s("t"))
        .item("Partition", AttributeValue::N("1".into()))
        .item("Counter", s("0"))
        .send()
        .await
        .unwrap();
    let leases = store.snapshot().await.unwrap().of(&m);
    assert_eq!(leases.leases.len(), 1, "partition 0 still readable");
    assert_eq!(leases.malformed.len(), 1);
    assert_eq!((leases.malformed[0].key.as_str(), leases.malformed[0].partition), (bad_key.as_str(), Some(1)));
    assert_eq!(leases.malformed[0].problem, "Counter is not a number (N)");
    // ensure cannot overwrite it; deleting it lets ensure recreate it free.
    store.ensure(&id(&m, 1), true).await.unwrap();
    assert_eq!(store.snapshot().await.unwrap().of(&m).malformed.len(), 1);
    store.delete_malformed(&bad_key).await.unwrap();
    store.ensure(&id(&m, 1), true).await.unwrap();
    let repaired = read(&store, &m, 1).await;
    assert_eq!((repaired.owner, repaired.counter, repaired.from_earliest), (None, 0, true));
    // delete_mapping needs only the keys, so it clears malformed items too.
    let other_bad = format!("lease#{m}#t#2");
    client.put_item().table_name(&tables.leases).item(LEASE_KEY, s(&other_bad)).send().await.unwrap();
    store.delete_mapping(&m).await.unwrap();
    let after = store.snapshot().await.unwrap().of(&m);
    assert!(after.leases.is_empty() && after.malformed.is_empty());
}

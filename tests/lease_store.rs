//! One conformance suite for the lease store, run against the in-memory fake and against
//! DynamoDB (dynalite): the fake must be exactly as strict as the table, or tests of the poll loop
//! over the fake would prove nothing. Time is passed explicitly (`now_ms`), never slept through.
//!
//! The steps share one store (one table), so each names its mappings and pollers afresh and looks
//! only at its own.

// The suite's steps live outside `#[test]` fns, where clippy's test allowances do not reach.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use kafka_esm::lease::{DynamoLeaseStore, Lease, LeaseError, LeaseStore, Load, MemoryLeaseStore, PollerInfo};
use kafka_esm::store::{LEASE_KEY, Tables, ensure_tables};
use kafka_esm_testkit::{Dynalite, sdk_config};

/// Any epoch-ms instant; the suite moves around it explicitly.
const T: i64 = 1_700_000_000_000;
const TEN_S: Duration = Duration::from_secs(10);
const WAIT: Duration = Duration::from_secs(120);

fn new_mapping() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A fresh prefix for one step's poller ids.
fn new_run() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn lost(result: Result<impl std::fmt::Debug, LeaseError>, what: &str) {
    match result {
        Err(LeaseError::Lost { .. }) => {}
        other => panic!("{what}: expected Lost, got {other:?}"),
    }
}

fn free_lease(mapping: &str, topic: &str, partition: i32) -> Lease {
    Lease { mapping: mapping.to_owned(), topic: topic.to_owned(), partition, owner: None, counter: 0 }
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

/// The live pollers at `now_ms` whose id starts with `run`, as listed.
async fn live<S: LeaseStore>(store: &S, run: &str, now_ms: i64) -> Vec<PollerInfo> {
    store.live_pollers(now_ms).await.unwrap().into_iter().filter(|p| p.id.starts_with(run)).collect()
}

fn ids(pollers: &[PollerInfo]) -> Vec<&str> {
    pollers.iter().map(|p| p.id.as_str()).collect()
}

async fn conformance<S: LeaseStore>(store: &S) {
    ensure_is_idempotent_and_never_resets_a_lease(store).await;
    acquire_of_a_missing_lease_is_lost_and_creates_nothing(store).await;
    leases_lists_only_that_mappings_sorted(store).await;
    exactly_one_of_two_racing_acquirers_wins(store).await;
    acquire_with_a_stale_counter_is_lost(store).await;
    only_the_holder_at_the_current_counter_can_release(store).await;
    a_lease_is_free_once_its_owners_heartbeat_expired_or_was_removed(store).await;
    heartbeats_carry_load(store).await;
    live_pollers_filters_by_expiry_and_sorts_by_id(store).await;
    delete_mapping_removes_all_its_leases_and_nothing_else(store).await;
    a_snapshot_agrees_with_leases_and_live_pollers(store).await;
}

/// The one-read snapshot a lease scan uses says what `leases` and `live_pollers` say.
async fn a_snapshot_agrees_with_leases_and_live_pollers<S: LeaseStore>(store: &S) {
    let (a, b) = (new_mapping(), new_mapping());
    for p in [1, 0] {
        store.ensure(&a, "t", p).await.unwrap();
    }
    store.ensure(&b, "u", 0).await.unwrap();
    let run = new_run();
    let (live_id, dead_id) = (format!("{run}-live"), format!("{run}-dead"));
    store.heartbeat(&live_id, T, TEN_S, Load { held: 1, lag: 5, stopping: false }).await.unwrap();
    store.heartbeat(&dead_id, T - 60_000, TEN_S, Load::default()).await.unwrap();
    let taken = store.acquire(&read(store, &a, 1).await, &live_id).await.unwrap();
    let snapshot = store.snapshot(T).await.unwrap();
    assert_eq!(snapshot.leases_of(&a).unwrap(), store.leases(&a).await.unwrap());
    assert_eq!(snapshot.leases_of(&a).unwrap()[1], taken);
    assert_eq!(snapshot.leases_of(&b).unwrap(), store.leases(&b).await.unwrap());
    assert!(snapshot.leases_of(&new_mapping()).unwrap().is_empty(), "a mapping without items has no leases");
    let mine: Vec<&PollerInfo> = snapshot.pollers.iter().filter(|p| p.id.starts_with(&run)).collect();
    assert_eq!(mine.len(), 1, "only the live heartbeat: {mine:?}");
    assert_eq!(mine[0].load, Load { held: 1, lag: 5, stopping: false });
    assert_eq!(snapshot.pollers, store.live_pollers(T).await.unwrap(), "same pollers, same order");
    store.remove_poller(&live_id).await.unwrap();
    store.remove_poller(&dead_id).await.unwrap();
}

async fn ensure_is_idempotent_and_never_resets_a_lease<S: LeaseStore>(store: &S) {
    let m = new_mapping();
    store.ensure(&m, "t", 0).await.unwrap();
    store.ensure(&m, "t", 0).await.unwrap();
    let free = free_lease(&m, "t", 0);
    assert_eq!(store.leases(&m).await.unwrap(), vec![free.clone()], "free: no owner, counter 0");

    // Once taken, ensure leaves it alone.
    let held = store.acquire(&free, "a").await.unwrap();
    assert_eq!(held, Lease { owner: Some("a".into()), counter: 1, ..free.clone() });
    store.ensure(&m, "t", 0).await.unwrap();
    assert_eq!(store.leases(&m).await.unwrap(), vec![held.clone()], "ensure of a held lease");

    // Nor does it reset a released lease's counter: a copy read at counter 0 must stay stale.
    store.release(&held, "a").await.unwrap();
    store.ensure(&m, "t", 0).await.unwrap();
    let released = Lease { owner: None, counter: 2, ..free.clone() };
    assert_eq!(store.leases(&m).await.unwrap(), vec![released]);
    lost(store.acquire(&free, "b").await, "acquire with the counter of before the release");
}

async fn acquire_of_a_missing_lease_is_lost_and_creates_nothing<S: LeaseStore>(store: &S) {
    let m = new_mapping();
    store.ensure(&m, "t", 0).await.unwrap();
    // Counter 0 is what `ensure` would write: the condition must still fail on a missing item.
    for counter in [0, 5] {
        let missing = Lease { counter, ..free_lease(&m, "t", 99) };
        lost(store.acquire(&missing, "a").await, &format!("acquire of a missing lease at counter {counter}"));
    }
    lost(store.acquire(&free_lease(&new_mapping(), "t", 0), "a").await, "acquire in an unknown mapping");
    assert_eq!(store.leases(&m).await.unwrap(), vec![free_lease(&m, "t", 0)], "nothing created");

    // Ensured later, it starts free like any other.
    store.ensure(&m, "t", 99).await.unwrap();
    assert_eq!(read(store, &m, 99).await, free_lease(&m, "t", 99));
}

async fn leases_lists_only_that_mappings_sorted<S: LeaseStore>(store: &S) {
    let m = new_mapping();
    // Shares `m` as a string prefix: the `#` after the UUID in the key must keep them apart.
    let longer = format!("{m}0");
    let other = new_mapping();
    // 10 after 2: partitions sort as numbers, not as the strings in the keys.
    for p in [10, 2, 0, 1] {
        store.ensure(&m, "t", p).await.unwrap();
    }
    store.ensure(&m, "a-topic", 3).await.unwrap();
    store.ensure(&longer, "t", 0).await.unwrap();
    store.ensure(&other, "t", 0).await.unwrap();
    // Heartbeats share the table; they are not leases.
    let run = new_run();
    store.heartbeat(&format!("{run}-p"), T, TEN_S, Load::default()).await.unwrap();

    let expected: Vec<Lease> = [("a-topic", 3), ("t", 0), ("t", 1), ("t", 2), ("t", 10)]
        .into_iter()
        .map(|(t, p)| free_lease(&m, t, p))
        .collect();
    assert_eq!(store.leases(&m).await.unwrap(), expected, "sorted by topic, then partition");
    assert_eq!(store.leases(&longer).await.unwrap(), vec![free_lease(&longer, "t", 0)]);
    assert_eq!(store.leases(&other).await.unwrap(), vec![free_lease(&other, "t", 0)]);
    assert!(store.leases(&new_mapping()).await.unwrap().is_empty());
}

async fn exactly_one_of_two_racing_acquirers_wins<S: LeaseStore>(store: &S) {
    let m = new_mapping();
    let run = new_run();
    let (a, b) = (format!("{run}-a"), format!("{run}-b"));
    store.ensure(&m, "t", 0).await.unwrap();
    // Neither racer heartbeats, so each round's winner is dead by the next round: rounds after the
    // first race for a lease taken over from a gone owner, not a never-taken one.
    for round in 0..20 {
        let seen = read(store, &m, 0).await;
        assert!(seen.is_free(&store.live_pollers(T).await.unwrap()), "round {round}: {seen:?} is free");
        let (ra, rb) = tokio::join!(store.acquire(&seen, &a), store.acquire(&seen, &b));
        let (winner, loser) = match (ra, rb) {
            (Ok(won), Err(LeaseError::Lost { .. })) => (won, &b),
            (Err(LeaseError::Lost { .. }), Ok(won)) => (won, &a),
            other => panic!("round {round}: expected exactly one winner, got {other:?}"),
        };
        assert!(winner.owner.is_some(), "round {round}: the winner owns it");
        assert_ne!(winner.owner.as_ref(), Some(loser), "round {round}");
        assert_eq!(winner.counter, seen.counter + 1, "round {round}: one write");
        assert_eq!(read(store, &m, 0).await, winner, "round {round}: stored as returned");
    }
    assert_eq!(read(store, &m, 0).await.counter, 20);
}

async fn acquire_with_a_stale_counter_is_lost<S: LeaseStore>(store: &S) {
    let m = new_mapping();
    store.ensure(&m, "t", 0).await.unwrap();
    // a and b both read the free lease; b takes it first.
    let seen_by_a = read(store, &m, 0).await;
    let b1 = store.acquire(&read(store, &m, 0).await, "b").await.unwrap();
    lost(store.acquire(&seen_by_a, "a").await, "acquire after someone else took it");
    assert_eq!(read(store, &m, 0).await, b1, "a failed acquire changes nothing");

    // b released it: free again, but a copy from before the release is still stale.
    store.release(&b1, "b").await.unwrap();
    lost(store.acquire(&b1, "a").await, "acquire with the counter of before the release");
    lost(store.acquire(&seen_by_a, "a").await, "acquire with a counter two writes old");
    let a1 = store.acquire(&read(store, &m, 0).await, "a").await.unwrap();
    assert_eq!(a1, Lease { owner: Some("a".into()), counter: 3, ..free_lease(&m, "t", 0) });
}

async fn only_the_holder_at_the_current_counter_can_release<S: LeaseStore>(store: &S) {
    let m = new_mapping();
    store.ensure(&m, "t", 0).await.unwrap();
    let free = read(store, &m, 0).await;
    lost(store.release(&free, "a").await, "release of a free lease");

    let a1 = store.acquire(&free, "a").await.unwrap();
    lost(store.release(&a1, "b").await, "release by a non-owner");
    lost(store.release(&free, "a").await, "release with the counter of before the acquire");
    assert_eq!(read(store, &m, 0).await, a1, "failed releases change nothing");

    // a released and took it again: its first copy has the right owner but a stale counter.
    store.release(&a1, "a").await.unwrap();
    let released = read(store, &m, 0).await;
    assert_eq!(released, Lease { owner: None, counter: 2, ..free.clone() }, "release frees and bumps");
    let a3 = store.acquire(&released, "a").await.unwrap();
    assert_eq!(a3.counter, 3);
    lost(store.release(&a1, "a").await, "release by the owner with a stale counter");
    assert_eq!(read(store, &m, 0).await, a3, "failed releases change nothing");

    store.release(&a3, "a").await.unwrap();
    assert_eq!(read(store, &m, 0).await, Lease { owner: None, counter: 4, ..free });
    lost(store.release(&a3, "a").await, "a second release of the same copy");
}

async fn a_lease_is_free_once_its_owners_heartbeat_expired_or_was_removed<S: LeaseStore>(store: &S) {
    let m = new_mapping();
    let run = new_run();
    let (alive, expired, removed, never) =
        (format!("{run}-alive"), format!("{run}-expired"), format!("{run}-removed"), format!("{run}-never"));
    for p in 0..4 {
        store.ensure(&m, "t", p).await.unwrap();
    }
    store.heartbeat(&alive, T, TEN_S, Load::default()).await.unwrap();
    // Written 20 s before `T` with a 10 s ttl: it ran out 10 s ago.
    store.heartbeat(&expired, T - 20_000, TEN_S, Load::default()).await.unwrap();
    store.heartbeat(&removed, T, TEN_S, Load::default()).await.unwrap();
    for (p, owner) in [&alive, &expired, &removed, &never].into_iter().enumerate() {
        let p = i32::try_from(p).unwrap();
        store.acquire(&read(store, &m, p).await, owner).await.unwrap();
    }
    store.remove_poller(&removed).await.unwrap();

    let live_now = store.live_pollers(T).await.unwrap();
    assert_eq!(ids(&live(store, &run, T).await), [alive.as_str()]);
    let free: Vec<bool> = store.leases(&m).await.unwrap().iter().map(|l| l.is_free(&live_now)).collect();
    assert_eq!(free, [false, true, true, true], "held by alive, expired, removed, never-heartbeating");

    // Live up to and including its expiry; one millisecond later, alive's lease is free too.
    let live_at_expiry = store.live_pollers(T + 10_000).await.unwrap();
    assert!(!read(store, &m, 0).await.is_free(&live_at_expiry), "live at its expiry instant");
    let live_after = store.live_pollers(T + 10_001).await.unwrap();
    assert!(read(store, &m, 0).await.is_free(&live_after), "free once its owner's heartbeat ran out");

    // A free lease is taken with the counter read; the old owner's copy is then stale.
    let old = read(store, &m, 1).await;
    let taken = store.acquire(&old, &alive).await.unwrap();
    assert_eq!(taken.owner.as_deref(), Some(alive.as_str()));
    assert!(!taken.is_free(&live_now));
    lost(store.release(&old, &expired).await, "release by the owner whose heartbeat expired");
    assert_eq!(read(store, &m, 1).await, taken);

    // A fresh heartbeat makes the same poller live again, and its leases held again.
    store.heartbeat(&removed, T + 1_000, TEN_S, Load::default()).await.unwrap();
    assert!(!read(store, &m, 2).await.is_free(&store.live_pollers(T + 1_000).await.unwrap()));
    for p in [&alive, &removed] {
        store.remove_poller(p).await.unwrap();
    }
}

async fn heartbeats_carry_load<S: LeaseStore>(store: &S) {
    let run = new_run();
    let (busy, huge) = (format!("{run}-busy"), format!("{run}-huge"));
    let busy_load = Load { held: 7, lag: 123_456_789_012, stopping: true };
    let huge_load = Load { held: u32::MAX, lag: u64::MAX, stopping: false };
    store.heartbeat(&busy, T, TEN_S, busy_load).await.unwrap();
    store.heartbeat(&huge, T, TEN_S, huge_load).await.unwrap();
    assert_eq!(
        live(store, &run, T).await,
        [
            PollerInfo { id: busy.clone(), expires_at_ms: T + 10_000, load: busy_load },
            PollerInfo { id: huge.clone(), expires_at_ms: T + 10_000, load: huge_load },
        ]
    );

    // A refresh replaces the load, down to zeros and false, and moves the expiry.
    store.heartbeat(&busy, T + 3_000, Duration::from_secs(20), Load::default()).await.unwrap();
    let refreshed = live(store, &run, T + 3_000).await;
    assert_eq!(refreshed[0], PollerInfo { id: busy.clone(), expires_at_ms: T + 23_000, load: Load::default() });
    assert_eq!(ids(&live(store, &run, T + 10_001).await), [busy.as_str()], "huge ran out, busy renewed");
    for p in [&busy, &huge] {
        store.remove_poller(p).await.unwrap();
    }
}

async fn live_pollers_filters_by_expiry_and_sorts_by_id<S: LeaseStore>(store: &S) {
    let run = new_run();
    let p = |name: &str| format!("{run}-{name}");
    assert!(live(store, &run, T).await.is_empty());
    // Written out of order; listed by id.
    store.heartbeat(&p("c"), T, TEN_S, Load::default()).await.unwrap();
    store.heartbeat(&p("a"), T, Duration::from_secs(1), Load::default()).await.unwrap();
    store.heartbeat(&p("b"), T, TEN_S, Load::default()).await.unwrap();
    store.heartbeat(&p("0-stale"), T - 5_000, Duration::from_secs(1), Load::default()).await.unwrap();
    // Leases share the table; they are not pollers.
    store.ensure(&new_mapping(), "t", 0).await.unwrap();

    let all = store.live_pollers(T).await.unwrap();
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "sorted by id, no duplicates: {:?}", ids(&all));
    assert!(all.iter().all(|p| !p.id.starts_with("lease#")), "no leases among {:?}", ids(&all));
    assert_eq!(ids(&live(store, &run, T).await), [p("a"), p("b"), p("c")]);
    assert_eq!(ids(&live(store, &run, T - 4_000).await), [p("0-stale"), p("a"), p("b"), p("c")]);
    assert_eq!(ids(&live(store, &run, T + 1_000).await), [p("a"), p("b"), p("c")], "live at its expiry");
    assert_eq!(ids(&live(store, &run, T + 1_001).await), [p("b"), p("c")]);

    store.remove_poller(&p("c")).await.unwrap();
    store.remove_poller(&p("c")).await.unwrap();
    store.remove_poller(&p("never-there")).await.unwrap();
    assert_eq!(ids(&live(store, &run, T).await), [p("a"), p("b")]);
    assert!(live(store, &run, T + 10_001).await.is_empty());
    for name in ["a", "b", "0-stale"] {
        store.remove_poller(&p(name)).await.unwrap();
    }
    assert!(live(store, &run, i64::MIN).await.is_empty(), "removed, not just expired");
}

async fn delete_mapping_removes_all_its_leases_and_nothing_else<S: LeaseStore>(store: &S) {
    let m = new_mapping();
    let longer = format!("{m}0");
    let other = new_mapping();
    let run = new_run();
    let survivor = format!("{run}-survivor");
    // Many leases (one DeleteItem each), on two topics, one of them held.
    for p in 0..30 {
        store.ensure(&m, "t", p).await.unwrap();
    }
    store.ensure(&m, "u", 0).await.unwrap();
    store.ensure(&longer, "t", 0).await.unwrap();
    store.ensure(&other, "t", 0).await.unwrap();
    store.acquire(&read(store, &other, 0).await, "b").await.unwrap();
    store.heartbeat(&survivor, T, TEN_S, Load::default()).await.unwrap();
    let held = store.acquire(&read(store, &m, 7).await, "a").await.unwrap();
    let (longer_before, other_before) = (store.leases(&longer).await.unwrap(), store.leases(&other).await.unwrap());

    store.delete_mapping(&m).await.unwrap();
    assert!(store.leases(&m).await.unwrap().is_empty());
    assert_eq!(store.leases(&longer).await.unwrap(), longer_before);
    assert_eq!(store.leases(&other).await.unwrap(), other_before);
    assert_eq!(ids(&live(store, &run, T).await), [survivor.as_str()]);

    // A holder learns on its next write; nothing recreates the item behind its back.
    lost(store.release(&held, "a").await, "release after delete");
    lost(store.acquire(&held, "a").await, "acquire after delete");
    assert!(store.leases(&m).await.unwrap().is_empty());
    store.delete_mapping(&m).await.unwrap();
    store.delete_mapping(&new_mapping()).await.unwrap();
    assert_eq!(store.leases(&other).await.unwrap(), other_before);
    store.remove_poller(&survivor).await.unwrap();
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
    store.fail_next(3);
    assert!(matches!(store.acquire(&free, "a").await, Err(LeaseError::Dynamo { .. })));
    assert!(matches!(store.heartbeat("p", T, TEN_S, Load::default()).await, Err(LeaseError::Dynamo { .. })));
    assert!(matches!(store.leases(&m).await, Err(LeaseError::Dynamo { .. })));
    assert_eq!(read(&store, &m, 0).await, free);
    assert!(store.live_pollers(T).await.unwrap().is_empty());
    store.acquire(&free, "a").await.unwrap();
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

    // Hand-written items under a mapping's prefix are reported, not skipped: a hidden partition
    // would go unconsumed.
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let bad_counter = new_mapping();
    store.ensure(&bad_counter, "t", 0).await.unwrap();
    let bad_key = format!("lease#{bad_counter}#t#1");
    client
        .put_item()
        .table_name(&tables.leases)
        .item(LEASE_KEY, s(&bad_key))
        .item("MappingUuid", s(&bad_counter))
        .item("Topic", s("t"))
        .item("Partition", AttributeValue::N("1".into()))
        .item("Counter", s("0"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        store.leases(&bad_counter).await,
        Err(LeaseError::Malformed { key: bad_key.clone(), message: "Counter is not a number (N)".into() })
    );
    // The snapshot reports it for that mapping alone.
    let snapshot = store.snapshot(T).await.unwrap();
    assert_eq!(
        snapshot.leases_of(&bad_counter),
        Err(LeaseError::Malformed { key: bad_key, message: "Counter is not a number (N)".into() })
    );
    assert!(snapshot.leases.values().filter(|l| l.is_err()).count() == 1, "other mappings still parse");

    let missing_partition = new_mapping();
    let missing_key = format!("lease#{missing_partition}#t#1");
    client
        .put_item()
        .table_name(&tables.leases)
        .item(LEASE_KEY, s(&missing_key))
        .item("Topic", s("t"))
        .send()
        .await
        .unwrap();
    match store.leases(&missing_partition).await {
        Err(LeaseError::Malformed { key, message }) => {
            assert_eq!(key, missing_key);
            assert!(message.contains("is missing"), "{message}");
        }
        other => panic!("expected Malformed, got {other:?}"),
    }

    // delete_mapping needs only the keys, so it clears malformed items too.
    for m in [&bad_counter, &missing_partition] {
        store.delete_mapping(m).await.unwrap();
        assert!(store.leases(m).await.unwrap().is_empty());
    }
}

//! Operating a running mapping on the local stack: `esm status` (exact offsets and lag per
//! partition, stuck partitions with their last error), offset resets while pollers run (replay
//! exactly once more, no commit over the reset) and with none running (a timestamp lands on the
//! first record at or after it), and the EMF lines the poller prints.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Harness, WAIT, request, settings, wait_for};
use kafka_esm::config::Settings;
use kafka_esm::coordination::connector::{Connector, MappingClient};
use kafka_esm::coordination::leases::LeaseStore;
use kafka_esm::delivery::checkpoint::Checkpoint;
use kafka_esm::model::mapping::EventSourceMapping;
use kafka_esm::ops::emf::EmfWriter;
use kafka_esm::ops::reset::{self, ApplySettings, ResetError, Target};
use kafka_esm::ops::status::{self, MappingStatus};
use kafka_esm_testkit::Tansu;
use kafka_esm_testkit::invoke_stub::{Reply, Rule};
use kafka_esm_testkit::kafka::{Producer, TestRecord, create_topic, random_topic};

fn now_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// Test settings with lease scans often enough that progress and reset requests move quickly.
fn ops_settings() -> Settings {
    Settings { scan_every: Duration::from_millis(500), ..settings() }
}

async fn status_of(h: &Harness, mapping: &EventSourceMapping, stuck_after: Duration) -> MappingStatus {
    let deps = h.env(settings());
    let offsets = status::offsets(&deps.connector, mapping).await;
    let snapshot = h.leases.snapshot().await.unwrap();
    let progress = h.leases.progress().await.unwrap();
    status::build(mapping, offsets.as_ref().map_err(String::as_str), &snapshot, &progress, now_ms(), stuck_after)
}

async fn committed(h: &Harness, mapping: &EventSourceMapping) -> BTreeMap<i32, Option<i64>> {
    let deps = h.env(settings());
    let client = deps.connector.connect(mapping).await.unwrap();
    let partitions = client.partitions().await.unwrap();
    client.checkpoint().committed(&partitions).await.unwrap()
}

fn apply_settings() -> ApplySettings {
    ApplySettings { timeout: WAIT, lease_duration: settings().lease.duration, poll_every: Duration::from_millis(200) }
}

fn delivered(h: &Harness, topic: &str, partition: i32) -> Vec<i64> {
    h.delivered().get(&format!("{topic}-{partition}")).cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_shows_exact_offsets_and_lag_per_partition_while_records_flow() {
    let h = Harness::new().await;
    let topic = random_topic("status");
    create_topic(common::bootstrap(), &topic, 2).await.unwrap();
    let producer = Producer::new(common::bootstrap()).unwrap();
    producer.fill(&topic, 2, 20, "v").await.unwrap();
    // Partition 0 is held up by a slow batch from offset 10 on; partition 1 runs through.
    h.stub.add_rule(Rule::reply(Reply::success()).record(&format!("{topic}-0"), 10).delay(Duration::from_secs(120)));
    let mut req = request("status-fn", &topic);
    req.batch_size = Some(5);
    req.maximum_batching_window_in_seconds = Some(0);
    req.metrics_config = Some(serde_json::json!({ "Metrics": ["EventCount", "KafkaMetrics"] }));
    let mapping = h.create(req).await;
    let poller = h.start_poller(ops_settings());

    let settled = wait_for(WAIT, || async {
        let s = status_of(&h, &mapping, status::STUCK_AFTER).await;
        let p = |n: usize| s.partitions.get(n).cloned();
        p(0).is_some_and(|p| p.committed_offset == Some(10) && p.owner.is_some() && p.last_invoke_ms.is_some())
            && p(1).is_some_and(|p| p.committed_offset == Some(20) && p.last_invoke_ms.is_some())
    })
    .await;
    assert!(settled.is_some(), "{:#?}", status_of(&h, &mapping, status::STUCK_AFTER).await);
    // More records while it runs: the end moves, partition 0's commit does not.
    producer.fill(&topic, 1, 5, "more").await.unwrap();
    let s = status_of(&h, &mapping, status::STUCK_AFTER).await;
    assert_eq!(s.error, None);
    let row = |p: i32| s.partitions.iter().find(|r| r.partition == p).cloned().unwrap();
    let (p0, p1) = (row(0), row(1));
    assert_eq!((p0.committed_offset, p0.end_offset, p0.lag), (Some(10), Some(25), Some(15)));
    assert_eq!((p1.committed_offset, p1.end_offset, p1.lag), (Some(20), Some(20), Some(0)));
    assert!(!p0.stuck && !p1.stuck, "5 minutes have not passed");
    assert!(!p0.owner_expired && p0.owner == p1.owner, "one live poller holds both");
    let table = status::table(std::slice::from_ref(&s), |ms| ms.to_string());
    assert!(table.contains("PARTITION") && table.lines().count() == 4, "{table}");

    // The poller's EMF lines follow the specification and carry the mapping's lag.
    let docs = EmfWriter::new("test").documents(&h.metrics, now_ms());
    assert!(!docs.is_empty());
    for doc in &docs {
        kafka_esm::testing::emf::validate(&doc.to_string()).unwrap_or_else(|e| panic!("{e}: {doc}"));
    }
    let line = docs
        .iter()
        .find(|d| d["EventSourceMappingUUID"] == mapping.uuid.as_str() && d.get("Partition").is_none())
        .unwrap();
    assert!(line["PolledEventCount"].as_u64().unwrap() >= 35, "{line}");
    assert!(docs.iter().any(|d| d["Partition"] == "0"), "KafkaMetrics: one line per partition");
    h.stub.clear_rules();
    poller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partition_whose_function_always_fails_shows_as_stuck_with_its_last_error() {
    let h = Harness::new().await;
    let topic = random_topic("stuck");
    create_topic(common::bootstrap(), &topic, 2).await.unwrap();
    Producer::new(common::bootstrap()).unwrap().fill(&topic, 2, 10, "v").await.unwrap();
    h.stub.add_rule(Rule::reply(Reply::function_error("boom: cannot parse order")).partition(&format!("{topic}-1")));
    let mut req = request("stuck-fn", &topic);
    req.maximum_batching_window_in_seconds = Some(0);
    let mapping = h.create(req).await;
    let poller = h.start_poller(ops_settings());
    let stuck_after = Duration::from_secs(2);
    let found = wait_for(WAIT, || async {
        let s = status_of(&h, &mapping, stuck_after).await;
        s.partitions.iter().any(|p| p.partition == 1 && p.stuck)
            && s.partitions.iter().any(|p| p.partition == 0 && p.committed_offset == Some(10))
    })
    .await;
    let s = status_of(&h, &mapping, stuck_after).await;
    assert!(found.is_some(), "{s:#?}");
    let p1 = s.partitions.iter().find(|p| p.partition == 1).unwrap();
    assert_eq!((p1.committed_offset, p1.lag), (Some(0), Some(10)));
    assert!(p1.last_error.as_deref().unwrap_or_default().contains("boom: cannot parse order"), "{p1:?}");
    assert!(p1.idle_s.is_some_and(|s| s >= 2));
    let p0 = s.partitions.iter().find(|p| p.partition == 0).unwrap();
    assert!(!p0.stuck && p0.lag == Some(0) && p0.last_error.is_none(), "{p0:?}");
    // With the default threshold (5 minutes) it is not stuck yet.
    let s = status_of(&h, &mapping, status::stuck_after(&mapping)).await;
    assert!(!s.partitions.iter().any(|p| p.stuck));
    poller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reset_to_earliest_on_a_running_mapping_redelivers_everything_once_more_and_nothing_commits_over_it() {
    let h = Harness::new().await;
    let topic = random_topic("replay");
    create_topic(common::bootstrap(), &topic, 2).await.unwrap();
    Producer::new(common::bootstrap()).unwrap().fill(&topic, 2, 10, "v").await.unwrap();
    let mut req = request("replay-fn", &topic);
    req.batch_size = Some(4);
    req.maximum_batching_window_in_seconds = Some(0);
    let mapping = h.create(req).await;
    let poller = h.start_poller(ops_settings());
    let all_committed = BTreeMap::from([(0, Some(10)), (1, Some(10))]);
    assert!(wait_for(WAIT, || async { committed(&h, &mapping).await == all_committed }).await.is_some());
    assert_eq!((delivered(&h, &topic, 0), delivered(&h, &topic, 1)), ((0..10).collect(), (0..10).collect()));

    // Every invoke fails from now on, so whatever is committed after the reset can only come
    // from the reset itself or from a poller committing over it.
    h.stub.add_rule(Rule::reply(Reply::function_error("down")));
    let deps = h.env(settings());
    let moves = reset::plan(&deps.connector, &mapping, &Target::Earliest).await.unwrap();
    assert_eq!(
        moves.iter().map(|m| (m.partition, m.current_offset, m.new_offset)).collect::<Vec<_>>(),
        [(0, Some(10), 0), (1, Some(10), 0)]
    );
    let applied = reset::apply(&*h.leases, &deps.connector, &mapping, moves, apply_settings(), now_ms).await.unwrap();
    let owners = common::live_owners(&h, &mapping.uuid).await;
    for m in &applied {
        assert_eq!(m.applied_by.as_ref(), owners.get(&m.partition), "applied by the partition's poller");
    }
    let reset_committed = BTreeMap::from([(0, Some(0)), (1, Some(0))]);
    assert_eq!(committed(&h, &mapping).await, reset_committed);
    // The poller keeps retrying the first batch; nothing moves the commit meanwhile.
    assert!(
        wait_for(Duration::from_secs(10), || async {
            h.stub.invocations().iter().filter(|i| !i.succeeded).count() >= 4
        })
        .await
        .is_some()
    );
    assert_eq!(committed(&h, &mapping).await, reset_committed, "a poller committed over the reset");

    h.stub.clear_rules();
    assert!(wait_for(WAIT, || async { committed(&h, &mapping).await == all_committed }).await.is_some());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let twice: Vec<i64> = (0..10).chain(0..10).collect();
    assert_eq!(delivered(&h, &topic, 0), twice);
    assert_eq!(delivered(&h, &topic, 1), twice);
    poller.stop().await;
}

static SQLITE: OnceLock<Tansu> = OnceLock::new();

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reset_to_a_timestamp_lands_on_the_first_offset_at_or_after_it_and_beyond_the_end_is_refused() {
    // tansu's memory engine answers every timestamp lookup with 0; its sqlite engine does not.
    let broker = SQLITE.get_or_init(|| Tansu::start_sqlite().expect("tansu with the sqlite engine"));
    let h = Harness::new().await;
    let topic = random_topic("reset-ts");
    create_topic(&broker.bootstrap, &topic, 1).await.unwrap();
    let producer = Producer::new(&broker.bootstrap).unwrap();
    let base = now_ms() - 3_600_000;
    for i in 0..10 {
        let record = TestRecord { partition: 0, value: Some(format!("r-{i}").into_bytes()), ..TestRecord::default() };
        producer.send_at(&topic, &record, base + i * 1000).await.unwrap();
    }
    let mut req = request("ts-fn", &topic);
    req.self_managed_event_source.as_mut().unwrap().endpoints.kafka_bootstrap_servers = vec![broker.bootstrap.clone()];
    req.maximum_batching_window_in_seconds = Some(0);
    let mapping = h.create(req).await;
    let deps = h.env(settings());

    let refused = reset::plan(&deps.connector, &mapping, &Target::Offsets(BTreeMap::from([(0, 11)]))).await;
    assert_eq!(refused, Err(ResetError::BeyondEnd { partition: 0, offset: 11, end: 10 }));

    // Between records 3 and 4: lands on 4. No poller runs: the command commits itself.
    let moves = reset::plan(&deps.connector, &mapping, &Target::Timestamp(base + 3500)).await.unwrap();
    assert_eq!(moves.iter().map(|m| (m.current_offset, m.new_offset)).collect::<Vec<_>>(), [(None, 4)]);
    let applied = reset::apply(&*h.leases, &deps.connector, &mapping, moves, apply_settings(), now_ms).await.unwrap();
    assert_eq!(applied[0].applied_by.as_deref(), Some("esm"));
    assert_eq!(committed(&h, &mapping).await, BTreeMap::from([(0, Some(4))]));
    // A poller started afterwards begins there (and does not apply the request again).
    let done = h.poll_until(ops_settings(), |h| delivered(h, &topic, 0).len() >= 6).await;
    assert!(done);
    assert_eq!(delivered(&h, &topic, 0), (4..10).collect::<Vec<_>>());
}

//! `AT_TIMESTAMP` end to end, on a broker that answers timestamp lookups from record timestamps
//! (tansu's sqlite engine; its memory engine answers 0 for every lookup): the mapping starts at
//! the first record at or after the time, and at the very first record for a time before it.
//!
//! A time after the last record must start at the end (Kafka answers -1). tansu's sqlite engine
//! answers 0 there instead (see `testkit/tests/tansu_timestamps.rs`), so that case is covered by
//! the unit test of the decision (`kafka::tests::starting_positions_resolve_as_kafka_answers`),
//! not here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Harness, settings};
use kafka_esm::api::CreateRequest;
use kafka_esm::model::mapping::{Endpoints, SelfManagedEventSource, StartingPosition};
use kafka_esm_testkit::Tansu;
use kafka_esm_testkit::kafka::{Producer, TestRecord, create_topic, random_topic};

static SQLITE: OnceLock<Tansu> = OnceLock::new();

fn broker() -> &'static Tansu {
    SQLITE.get_or_init(|| {
        Tansu::start_sqlite().expect("tansu with the sqlite engine (scripts/install-deps.sh builds it)")
    })
}

fn now_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

fn at_timestamp(function: &str, topic: &str, seconds: f64) -> CreateRequest {
    CreateRequest {
        function_name: function.into(),
        self_managed_event_source: Some(SelfManagedEventSource {
            endpoints: Endpoints { kafka_bootstrap_servers: vec![broker().bootstrap.clone()] },
        }),
        topics: vec![topic.to_owned()],
        starting_position: Some(StartingPosition::AtTimestamp),
        starting_position_timestamp: Some(seconds),
        batch_size: Some(100),
        maximum_batching_window_in_seconds: Some(0),
        ..CreateRequest::default()
    }
}

/// Offsets delivered to `function`, in order.
fn delivered_to(h: &Harness, function: &str) -> Vec<i64> {
    h.stub
        .invocations()
        .iter()
        .filter(|i| i.succeeded && i.function.ends_with(function))
        .flat_map(|i| i.offsets().into_iter().flat_map(|(_, o)| o))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn at_timestamp_starts_at_the_first_record_at_or_after_the_time() {
    let h = Harness::new().await;
    let topic = random_topic("at-ts");
    create_topic(&broker().bootstrap, &topic, 1).await.unwrap();
    let producer = Producer::new(&broker().bootstrap).unwrap();
    // Ten records an hour ago, one second apart; five now.
    let base = now_ms() - 3_600_000;
    for i in 0..10 {
        let record = TestRecord { partition: 0, value: Some(format!("old-{i}").into_bytes()), ..TestRecord::default() };
        producer.send_at(&topic, &record, base + i * 1000).await.unwrap();
    }
    producer.fill(&topic, 1, 5, "new").await.unwrap();

    #[allow(clippy::cast_precision_loss)]
    let seconds = |ms: i64| ms as f64 / 1000.0;
    // Between records 3 and 4; and a minute before the first.
    h.create(at_timestamp("between", &topic, seconds(base + 3500))).await;
    h.create(at_timestamp("before", &topic, seconds(base - 60_000))).await;
    let done = h
        .poll_until(settings(), |h| delivered_to(h, "between").len() >= 11 && delivered_to(h, "before").len() >= 15)
        .await;
    assert!(done, "between {:?}, before {:?}", delivered_to(&h, "between"), delivered_to(&h, "before"));
    assert_eq!(delivered_to(&h, "between"), (4..15).collect::<Vec<_>>());
    assert_eq!(delivered_to(&h, "before"), (0..15).collect::<Vec<_>>());
    tokio::time::sleep(Duration::from_millis(10)).await;
}

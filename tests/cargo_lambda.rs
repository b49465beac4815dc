//! End to end into a real Rust function: the example consumer served by `cargo lambda watch`
//! (started by `scripts/test.sh`, endpoint in `KAFKA_ESM_TEST_LAMBDA_ENDPOINT`). The function
//! parses every event with `aws_lambda_events::kafka::KafkaEvent`, so a payload it could not read
//! would fail the invoke; it fails on purpose for records containing `kafka-esm-poison`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{bootstrap, request, settings};
use kafka_esm::aws::lambda::{LambdaFunctionResolver, LambdaInvoker};
use kafka_esm::aws::leases::DynamoLeaseStore;
use kafka_esm::aws::mappings::{DynamoMappingStore, ensure_tables};
use kafka_esm::clock::SystemClock;
use kafka_esm::config::Tables;
use kafka_esm::coordination::consumer::Deps;
use kafka_esm::coordination::supervisor::{NoSpawner, Start, run_poller};
use kafka_esm::delivery::metrics::Metrics;
use kafka_esm::kafka::KafkaConnector;
use kafka_esm::kafka::cluster::ClusterResolver;
use kafka_esm_testkit::kafka::{Producer, TestRecord, committed_offsets_out_of_process, create_topic, random_topic};
use kafka_esm_testkit::sdk_config;
use tokio_util::sync::CancellationToken;

fn lambda_endpoint() -> String {
    std::env::var("KAFKA_ESM_TEST_LAMBDA_ENDPOINT")
        .expect("KAFKA_ESM_TEST_LAMBDA_ENDPOINT is not set: run the tests with scripts/test.sh, which starts cargo lambda watch")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_reach_the_example_consumer_and_offsets_are_committed() {
    let (_, dynalite) = common::services();
    let ddb = sdk_config(&dynalite.endpoint).await;
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let tables = Tables { mappings: format!("m-{suffix}"), leases: format!("l-{suffix}") };
    ensure_tables(&aws_sdk_dynamodb::Client::new(&ddb), &tables).await.unwrap();
    let store = Arc::new(DynamoMappingStore::from_sdk(&ddb, &tables.mappings));
    let lambda = sdk_config(&lambda_endpoint()).await;

    let topic = random_topic("watch");
    create_topic(bootstrap(), &topic, 3).await.unwrap();
    let producer = Producer::new(bootstrap()).unwrap();
    producer.fill(&topic, 3, 100, "hello").await.unwrap();
    // Partition 2 holds a record the function refuses: it must block only partition 2.
    producer
        .send(&topic, &TestRecord { partition: 2, value: Some(b"kafka-esm-poison".to_vec()), ..TestRecord::default() })
        .await
        .unwrap();
    producer.fill(&topic, 3, 5, "after").await.unwrap();

    let functions = LambdaFunctionResolver::new(aws_sdk_lambda::Client::new(&lambda));
    let mut req = request("example-consumer", &topic);
    req.batch_size = Some(50);
    let mapping = kafka_esm::api::create(&*store, &functions, req).await.unwrap();
    // cargo lambda watch has no GetFunction: the name is kept as given.
    assert_eq!(mapping.function_arn, "example-consumer");

    let metrics = Arc::new(Metrics::default());
    let settings = settings();
    let deps = Arc::new(Deps {
        connector: KafkaConnector::new(ClusterResolver::new(&lambda), settings.kafka),
        invoker: Arc::new(LambdaInvoker::new(&lambda).unwrap()),
        metrics: metrics.clone(),
        settings,
    });
    let stop = CancellationToken::new();
    let leases = Arc::new(DynamoLeaseStore::from_sdk(&ddb, &tables.leases));
    let poller = tokio::spawn(run_poller(
        store.clone(),
        leases,
        deps,
        Arc::new(SystemClock),
        None::<Arc<NoSpawner>>,
        Start::Process,
        stop.clone(),
    ));
    let expected = BTreeMap::from([(0, 105), (1, 105), (2, 100)]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    let mut committed = BTreeMap::new();
    while tokio::time::Instant::now() < deadline {
        committed = committed_offsets_out_of_process(bootstrap(), &mapping.uuid, &topic).unwrap();
        if committed == expected && metrics.totals().failed_attempts >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(60), poller).await.unwrap().unwrap();
    assert_eq!(committed, expected, "everything but partition 2's poison record and what follows it is committed");
    let (records, failed) = (metrics.totals().invoked, metrics.totals().failed_attempts);
    assert_eq!(records, 310, "each record delivered once");
    assert!(failed >= 2, "the function's failures (HTTP 500 from the emulator) were retried");
}

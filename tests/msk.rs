//! MSK clusters by ARN, against the in-repo MSK control plane (`MskStub`) whose clusters'
//! brokers are the shared tansu: the resolver asks DescribeCluster and GetBootstrapBrokers once
//! per mapping version, waits out a cluster being created and control-plane errors with the
//! poller's backoff, and disables the mapping, saying why, when the cluster is gone, failed or
//! denied.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::kafka::KafkaEvent;
use common::{Harness, WAIT, bootstrap, settings, wait_for};
use kafka_esm::api::CreateRequest;
use kafka_esm::aws::lambda::LambdaInvoker;
use kafka_esm::coordination::consumer::Deps;
use kafka_esm::coordination::supervisor::Exit;
use kafka_esm::kafka::KafkaConnector;
use kafka_esm::kafka::cluster::ClusterResolver;
use kafka_esm::model::mapping::{EventSourceMapping, StartingPosition, State};
use kafka_esm::model::store::Loaded;
use kafka_esm_testkit::kafka::{Producer, create_topic, random_topic};
use kafka_esm_testkit::msk_stub::cluster_arn;
use kafka_esm_testkit::{MskCluster, MskFailure, MskRoute, MskStub, sdk_config};
use tokio_util::sync::CancellationToken;

/// A poller whose resolver talks to `msk` (the harness's own resolver points at the Invoke
/// stub, and tests cannot set the process-wide `AWS_ENDPOINT_URL_KAFKA`).
struct MskPoller {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Exit>,
}

impl MskPoller {
    async fn start(h: &Harness, msk: &MskStub) -> Self {
        let settings = settings();
        let deps = Arc::new(Deps {
            connector: KafkaConnector::new(ClusterResolver::new(&sdk_config(&msk.endpoint).await), settings.kafka),
            invoker: Arc::new(LambdaInvoker::new(&sdk_config(&h.stub.endpoint).await).unwrap()),
            metrics: h.metrics.clone(),
            settings,
        });
        let stop = CancellationToken::new();
        let task = h.spawn_poller_with(deps, &stop);
        Self { stop, task }
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("poller stops within 30 s")
            .expect("poller task");
    }
}

fn msk_request(arn: &str, topic: &str) -> CreateRequest {
    CreateRequest {
        function_name: "consumer".into(),
        event_source_arn: Some(arn.to_owned()),
        topics: vec![topic.to_owned()],
        starting_position: Some(StartingPosition::TrimHorizon),
        ..CreateRequest::default()
    }
}

/// A topic on tansu with `count` records in each of `partitions`.
async fn filled_topic(prefix: &str, partitions: i32, count: usize) -> String {
    let topic = random_topic(prefix);
    create_topic(bootstrap(), &topic, partitions).await.unwrap();
    Producer::new(bootstrap()).unwrap().fill(&topic, partitions, count, "v").await.unwrap();
    topic
}

async fn status(h: &Harness, mapping: &EventSourceMapping) -> (State, String, String) {
    match h.mapping(&mapping.uuid).await {
        Some(Loaded::Valid(m)) => {
            (m.state, m.state_transition_reason.unwrap_or_default(), m.last_processing_result.unwrap_or_default())
        }
        other => panic!("unexpected item {other:?}"),
    }
}

async fn wait_disabled(h: &Harness, mapping: &EventSourceMapping) -> (State, String, String) {
    wait_for(WAIT, || async { status(h, mapping).await.0 == State::Disabled }).await;
    status(h, mapping).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn msk_mapping_delivers_aws_kafka_events_and_asks_the_control_plane_once() {
    let h = Harness::new().await;
    let msk = MskStub::start().await;
    let arn = cluster_arn("orders");
    msk.put_cluster(&arn, MskCluster::active_plaintext(bootstrap()));
    let topic = random_topic("msk");
    let mut request = msk_request(&arn, &topic);
    request.batch_size = Some(10);
    let mapping = h.create(request).await;

    // The topic does not exist yet: the consumer reconnects with backoff until it does, and every
    // reconnect asks the resolver again, which answers from its cache.
    let poller = MskPoller::start(&h, &msk).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    create_topic(bootstrap(), &topic, 2).await.unwrap();
    Producer::new(bootstrap()).unwrap().fill(&topic, 2, 30, "v").await.unwrap();
    let done = wait_for(WAIT, || async { h.delivered_count() >= 60 }).await;
    poller.stop().await;
    assert!(done.is_some(), "delivered {} of 60", h.delivered_count());

    let invocations = h.stub.invocations();
    assert!(invocations.len() >= 6, "BatchSize 10 over 60 records: {} invocations", invocations.len());
    for inv in &invocations {
        assert_eq!(inv.event["eventSource"], "aws:kafka");
        assert_eq!(inv.event["eventSourceArn"], arn.as_str());
        assert_eq!(inv.event["bootstrapServers"], bootstrap());
        let event: KafkaEvent = serde_json::from_str(&inv.raw).expect("the payload is a KafkaEvent");
        assert_eq!(event.event_source_arn.as_deref(), Some(arn.as_str()));
    }
    assert_eq!(msk.calls(MskRoute::DescribeCluster), 1, "DescribeCluster once per mapping version");
    assert_eq!(msk.calls(MskRoute::GetBootstrapBrokers), 1, "GetBootstrapBrokers once per mapping version");
    assert_eq!(status(&h, &mapping).await.0, State::Enabled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_or_failed_cluster_disables_the_mapping_naming_the_arn() {
    let h = Harness::new().await;
    let msk = MskStub::start().await;
    let topic = filled_topic("msk-gone", 1, 5).await;
    let unknown = cluster_arn("never-created");
    let failed = cluster_arn("broken");
    msk.put_cluster(&failed, MskCluster { state: "FAILED".into(), ..MskCluster::active_plaintext(bootstrap()) });
    let unknown_mapping = h.create(msk_request(&unknown, &topic)).await;
    let failed_mapping = h.create(msk_request(&failed, &topic)).await;

    let poller = MskPoller::start(&h, &msk).await;
    let (state, reason, result) = wait_disabled(&h, &unknown_mapping).await;
    assert_eq!((state, reason.as_str()), (State::Disabled, "ESM_CONFIG_NOT_VALID"), "result: {result}");
    assert!(result.starts_with("PROBLEM: ") && result.contains(&unknown), "names the ARN: {result}");
    assert!(result.contains("does not exist"), "says what is wrong: {result}");
    let (state, reason, result) = wait_disabled(&h, &failed_mapping).await;
    assert_eq!((state, reason.as_str()), (State::Disabled, "ESM_CONFIG_NOT_VALID"), "result: {result}");
    assert!(result.contains(&failed) && result.contains("FAILED"), "names the ARN and state: {result}");
    // A disabled mapping is not retried.
    tokio::time::sleep(Duration::from_secs(1)).await;
    poller.stop().await;
    assert_eq!(msk.calls(MskRoute::DescribeCluster), 2, "one DescribeCluster per mapping, no retries");
    assert_eq!(msk.calls(MskRoute::GetBootstrapBrokers), 0, "no brokers asked for a cluster that cannot serve");
    assert!(h.stub.invocations().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_denied_describe_cluster_disables_the_mapping_with_an_authz_error() {
    let h = Harness::new().await;
    let msk = MskStub::start().await;
    let arn = cluster_arn("locked");
    msk.put_cluster(&arn, MskCluster::active_plaintext(bootstrap()));
    msk.fail(
        MskRoute::DescribeCluster,
        MskFailure { status: 403, error_type: "AccessDeniedException".into(), times: usize::MAX },
    );
    let topic = filled_topic("msk-denied", 1, 5).await;
    let mapping = h.create(msk_request(&arn, &topic)).await;

    let poller = MskPoller::start(&h, &msk).await;
    let (state, reason, result) = wait_disabled(&h, &mapping).await;
    poller.stop().await;
    assert_eq!((state, reason.as_str()), (State::Disabled, "EVENT_SOURCE_AUTHZ_ERROR"), "result: {result}");
    assert!(result.contains(&arn) && result.contains("kafka:DescribeCluster"), "names the ARN and the fix: {result}");
    assert!(h.stub.invocations().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn control_plane_errors_are_retried_with_backoff_and_the_mapping_stays_enabled() {
    let h = Harness::new().await;
    let msk = MskStub::start().await;
    let arn = cluster_arn("flaky");
    msk.put_cluster(&arn, MskCluster::active_plaintext(bootstrap()));
    msk.fail(
        MskRoute::GetBootstrapBrokers,
        MskFailure { status: 500, error_type: "InternalServerErrorException".into(), times: 2 },
    );
    let topic = filled_topic("msk-flaky", 1, 10).await;
    let mapping = h.create(msk_request(&arn, &topic)).await;

    let poller = MskPoller::start(&h, &msk).await;
    let done = wait_for(WAIT, || async { h.delivered_count() >= 10 }).await;
    poller.stop().await;
    assert!(done.is_some(), "delivered {} of 10", h.delivered_count());
    let (state, reason, result) = status(&h, &mapping).await;
    assert_eq!(state, State::Enabled, "reason {reason}, result {result}");
    let calls = msk.call_times(MskRoute::GetBootstrapBrokers);
    assert_eq!(calls.len(), 3, "two failures, one success, then cached");
    // Reconnect backoff from 200 ms with equal jitter: at least 100 ms, then 200 ms.
    let waited = calls[2] - calls[0];
    assert!(waited >= Duration::from_millis(300), "retries waited only {waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_being_created_is_waited_for_and_then_consumed() {
    let h = Harness::new().await;
    let msk = MskStub::start().await;
    let arn = cluster_arn("new");
    msk.put_cluster(&arn, MskCluster { state: "CREATING".into(), ..MskCluster::active_plaintext(bootstrap()) });
    let topic = filled_topic("msk-new", 1, 10).await;
    let mapping = h.create(msk_request(&arn, &topic)).await;

    let poller = MskPoller::start(&h, &msk).await;
    let polled = wait_for(WAIT, || async { msk.calls(MskRoute::DescribeCluster) >= 3 }).await;
    assert!(polled.is_some(), "DescribeCluster asked again while CREATING: {}", msk.calls(MskRoute::DescribeCluster));
    let (state, reason, result) = status(&h, &mapping).await;
    assert_eq!(state, State::Enabled, "not disabled while CREATING: reason {reason}, result {result}");
    assert_eq!(h.delivered_count(), 0);
    assert_eq!(msk.calls(MskRoute::GetBootstrapBrokers), 0, "no brokers asked before ACTIVE");

    msk.set_state(&arn, "ACTIVE");
    let done = wait_for(WAIT, || async { h.delivered_count() >= 10 }).await;
    poller.stop().await;
    assert!(done.is_some(), "delivered {} of 10 once ACTIVE", h.delivered_count());
    assert_eq!(msk.calls(MskRoute::GetBootstrapBrokers), 1);
    assert_eq!(status(&h, &mapping).await.0, State::Enabled);
}

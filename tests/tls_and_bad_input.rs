//! Brokers over TLS (verified against a private CA) and the bad inputs users hit: wrong
//! certificate, unreachable brokers, a topic that does not exist, a function that does not
//! exist, a hand-written item that is not a mapping. Each gives a clear, visible state, no
//! crash, no busy loop, and nothing committed that was not delivered.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Harness, bootstrap, request, settings};
use kafka_esm::model::mapping::{
    Endpoints, SelfManagedEventSource, SourceAccessConfiguration, SourceAccessType, State,
};
use kafka_esm::model::store::Loaded;
use kafka_esm_testkit::kafka::{
    Producer, committed_offsets_out_of_process, committed_offsets_out_of_process_tls, create_topic, create_topic_with,
    random_topic,
};
use kafka_esm_testkit::tls::{TestCa, TlsTansu};

fn tls_request(
    function: &str,
    topic: &str,
    bootstrap: &str,
    ca_file: &std::path::Path,
) -> kafka_esm::api::CreateRequest {
    let mut req = request(function, topic);
    req.self_managed_event_source =
        Some(SelfManagedEventSource { endpoints: Endpoints { kafka_bootstrap_servers: vec![bootstrap.to_owned()] } });
    req.source_access_configurations = Some(vec![SourceAccessConfiguration {
        kind: SourceAccessType::ServerRootCaCertificate,
        uri: format!("file://{}", ca_file.display()),
    }]);
    req
}

async fn state_of(h: &Harness, uuid: &str) -> (State, String, String) {
    match h.mapping(uuid).await {
        Some(Loaded::Valid(m)) => {
            (m.state, m.state_transition_reason.unwrap_or_default(), m.last_processing_result.unwrap_or_default())
        }
        other => panic!("unexpected item {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_with_a_private_ca_delivers_and_an_untrusted_or_misnamed_certificate_is_refused() {
    let h = Harness::new().await;
    let ca = TestCa::new().unwrap();
    let good = TlsTansu::start(&ca, "localhost").unwrap();
    let topic = random_topic("tls");
    // tansu advertises only the TLS address, so every client goes through TLS.
    let ca_path = ca.ca_path().display().to_string();
    let tls = [("security.protocol", "ssl"), ("ssl.ca.location", ca_path.as_str())];
    create_topic_with(&good.bootstrap, &topic, 2, &tls).await.unwrap();
    Producer::with_config(&good.bootstrap, &tls).unwrap().fill(&topic, 2, 10, "tls").await.unwrap();
    let mapping = h.create(tls_request("consumer", &topic, &good.bootstrap, &ca.ca_path())).await;
    assert!(
        h.poll_until(settings(), |h| h.delivered_count() >= 20).await,
        "delivered {} over TLS",
        h.delivered_count()
    );
    assert_eq!(h.stub.invocations()[0].event["bootstrapServers"], good.bootstrap.as_str());
    let committed =
        committed_offsets_out_of_process_tls(&good.bootstrap, &mapping.uuid, &topic, Some(&ca.ca_path())).unwrap();
    assert_eq!(committed, BTreeMap::from([(0, 10), (1, 10)]));

    // A CA that did not sign the broker's certificate.
    let other_ca = TestCa::new().unwrap();
    let h2 = Harness::new().await;
    let untrusted = h2.create(tls_request("consumer", &topic, &good.bootstrap, &other_ca.ca_path())).await;
    h2.poll_for(settings(), Duration::from_secs(8)).await;
    let (state, reason, result) = state_of(&h2, &untrusted.uuid).await;
    assert_eq!((state, reason.as_str()), (State::Disabled, "EVENT_SOURCE_AUTHN_ERROR"), "result: {result}");
    assert!(result == "Lambda failed to authenticate server", "LastProcessingResult names the cause: {result}");
    assert!(h2.stub.invocations().is_empty());

    // The right CA, but a certificate issued for another host name.
    let misnamed = TlsTansu::start(&ca, "kafka.example.com").unwrap();
    let h3 = Harness::new().await;
    let wrong_name = h3.create(tls_request("consumer", &topic, &misnamed.bootstrap, &ca.ca_path())).await;
    h3.poll_for(settings(), Duration::from_secs(8)).await;
    let (state, reason, result) = state_of(&h3, &wrong_name.uuid).await;
    assert_eq!((state, reason.as_str()), (State::Disabled, "EVENT_SOURCE_AUTHN_ERROR"), "result: {result}");
    assert!(h3.stub.invocations().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unreachable_brokers_back_off_keep_the_mapping_enabled_and_stop_promptly() {
    let h = Harness::new().await;
    let mut req = request("consumer", "orders");
    let dead = format!("127.0.0.1:{}", kafka_esm_testkit::free_port());
    req.self_managed_event_source =
        Some(SelfManagedEventSource { endpoints: Endpoints { kafka_bootstrap_servers: vec![dead] } });
    let mapping = h.create(req).await;
    let mut s = settings();
    s.kafka.request_timeout = Duration::from_secs(1);
    let started = std::time::Instant::now();
    h.poll_for(s, Duration::from_secs(6)).await;
    assert!(started.elapsed() < Duration::from_secs(15), "stop is prompt even while reconnecting");
    // Transient: the mapping stays enabled, with nothing invoked.
    let (state, _, _) = state_of(&h, &mapping.uuid).await;
    assert_eq!(state, State::Enabled);
    assert!(h.stub.invocations().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_topic_is_waited_for_and_picked_up_once_created() {
    let h = Harness::new().await;
    let topic = random_topic("later");
    let mapping = h.create(request("consumer", &topic)).await;
    let producer = Producer::new(bootstrap()).unwrap();
    let topic2 = topic.clone();
    let creator = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        create_topic(bootstrap(), &topic2, 1).await.unwrap();
        producer.fill(&topic2, 1, 5, "late").await.unwrap();
    });
    assert!(
        h.poll_until(settings(), |h| h.delivered_count() >= 5).await,
        "records of a topic created later are delivered"
    );
    creator.await.unwrap();
    let (state, _, _) = state_of(&h, &mapping.uuid).await;
    assert_eq!(state, State::Enabled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_function_disables_the_mapping_with_function_config_not_valid() {
    let h = Harness::new().await;
    let topic = random_topic("nofn");
    create_topic(bootstrap(), &topic, 1).await.unwrap();
    Producer::new(bootstrap()).unwrap().fill(&topic, 1, 3, "v").await.unwrap();
    // Created while the function existed; deleted afterwards.
    let mapping = h.create(request("ghost", &topic)).await;
    h.stub.set_known_functions(&["someone-else"]);
    assert!(h.poll_until(settings(), |h| h.stub.counts().0 > 0).await);
    h.poll_for(settings(), Duration::from_secs(1)).await;
    let (state, reason, result) = state_of(&h, &mapping.uuid).await;
    assert_eq!((state, reason.as_str()), (State::Disabled, "FUNCTION_CONFIG_NOT_VALID"));
    assert!(result.contains("ghost") && result.contains("does not exist"), "{result}");
    // Nothing was delivered, so only the pinned starting position is committed.
    assert_eq!(committed_offsets_out_of_process(bootstrap(), &mapping.uuid, &topic).unwrap(), BTreeMap::from([(0, 0)]));
    // A disabled mapping is not retried: no further invoke attempts.
    let attempts = h.stub.counts().0;
    h.poll_for(settings(), Duration::from_secs(1)).await;
    assert_eq!(h.stub.counts().0, attempts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_malformed_hand_written_item_is_disabled_and_others_keep_running() {
    let h = Harness::new().await;
    let topic = random_topic("mixed");
    create_topic(bootstrap(), &topic, 1).await.unwrap();
    Producer::new(bootstrap()).unwrap().fill(&topic, 1, 5, "v").await.unwrap();
    let good = h.create(request("consumer", &topic)).await;
    // Wrong type for BatchSize, an unknown field: as someone might write with put-item.
    let bad_uuid = uuid::Uuid::new_v4().to_string();
    let client = aws_sdk_dynamodb::Client::new(&kafka_esm_testkit::sdk_config(&common::services().1.endpoint).await);
    use aws_sdk_dynamodb::types::AttributeValue as A;
    client
        .put_item()
        .table_name(&h.tables.mappings)
        .item("UUID", A::S(bad_uuid.clone()))
        .item("FunctionArn", A::S("consumer".into()))
        .item("BatchSize", A::S("lots".into()))
        .item("Topics", A::L(vec![A::S(topic.clone())]))
        .item("State", A::S("Enabled".into()))
        .item("Colour", A::S("blue".into()))
        .send()
        .await
        .unwrap();
    assert!(h.poll_until(settings(), |h| h.delivered_count() >= 5).await);
    h.poll_for(settings(), Duration::from_millis(500)).await;
    let item = client
        .get_item()
        .table_name(&h.tables.mappings)
        .key("UUID", A::S(bad_uuid))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(item["State"].as_s().unwrap(), "Disabled");
    assert_eq!(item["StateTransitionReason"].as_s().unwrap(), "ESM_CONFIG_NOT_VALID");
    let result = item["LastProcessingResult"].as_s().unwrap();
    // It names the field at fault (either problem may be found first).
    assert!(
        result.starts_with("PROBLEM: BatchSize: invalid type") || result.starts_with("PROBLEM: Colour: unknown field"),
        "{result}"
    );
    let (state, _, _) = state_of(&h, &good.uuid).await;
    assert_eq!(state, State::Enabled);
}

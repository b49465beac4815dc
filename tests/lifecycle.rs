//! The state machine as the poller applies it, with the shipped refresh interval (3 s): a disabled
//! mapping stops invoking within 10 seconds and keeps its offsets, re-enabling resumes from them,
//! an update applies within 10 seconds, a deleted mapping stops and its item is removed; several
//! mappings share a topic, and one function is fed by several mappings.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Harness, bootstrap, request, settings, wait_for};
use kafka_esm::api::{self, UpdateRequest};
use kafka_esm::config::Settings;
use kafka_esm::model::mapping::State;
use kafka_esm::model::store::Loaded;
use kafka_esm_testkit::kafka::{Producer, committed_offsets_out_of_process, create_topic, random_topic};

const REACTION: Duration = Duration::from_secs(10);

fn shipped_refresh() -> Settings {
    Settings { refresh_interval: Settings::default().refresh_interval, ..settings() }
}

async fn state(h: &Harness, uuid: &str) -> Option<State> {
    match h.mapping(uuid).await {
        Some(Loaded::Valid(m)) => Some(m.state),
        None => None,
        other => panic!("unexpected item {other:?}"),
    }
}

struct NoFunctions;

impl api::FunctionResolver for NoFunctions {
    async fn resolve(&self, name: &str) -> Result<String, api::ApiError> {
        Ok(name.to_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disable_stops_within_10_s_keeps_offsets_and_enable_resumes_from_them() {
    let h = Harness::new().await;
    let topic = random_topic("toggle");
    create_topic(bootstrap(), &topic, 2).await.unwrap();
    let producer = Producer::new(bootstrap()).unwrap();
    producer.fill(&topic, 2, 10, "a").await.unwrap();
    let mut req = request("consumer", &topic);
    req.maximum_batching_window_in_seconds = Some(0);
    let mapping = h.create(req).await;
    let poller = h.start_poller(shipped_refresh());
    assert!(wait_for(common::WAIT, || async { h.delivered_count() == 20 }).await.is_some());
    assert!(wait_for(REACTION, || async { state(&h, &mapping.uuid).await == Some(State::Enabled) }).await.is_some());

    let update = UpdateRequest { uuid: mapping.uuid.clone(), enabled: Some(false), ..UpdateRequest::default() };
    assert_eq!(api::update(&*h.store, &NoFunctions, update).await.unwrap().state, State::Disabling);
    let took = wait_for(REACTION, || async { state(&h, &mapping.uuid).await == Some(State::Disabled) }).await;
    assert!(took.is_some(), "Disabling did not become Disabled within 10 s");
    let invocations = h.stub.invocations().len();
    producer.fill(&topic, 2, 5, "while-disabled").await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(h.stub.invocations().len(), invocations, "a disabled mapping invokes nothing");
    assert_eq!(
        committed_offsets_out_of_process(bootstrap(), &mapping.uuid, &topic).unwrap(),
        BTreeMap::from([(0, 10), (1, 10)]),
        "offsets are kept"
    );

    let update = UpdateRequest { uuid: mapping.uuid.clone(), enabled: Some(true), ..UpdateRequest::default() };
    assert_eq!(api::update(&*h.store, &NoFunctions, update).await.unwrap().state, State::Enabling);
    assert!(wait_for(REACTION + common::WAIT, || async { h.delivered_count() == 30 }).await.is_some());
    assert_eq!(state(&h, &mapping.uuid).await, Some(State::Enabled));
    let delivered = h.delivered();
    for p in 0..2 {
        assert_eq!(
            delivered[&format!("{topic}-{p}")],
            (0..15).collect::<Vec<i64>>(),
            "resumed from the committed offset"
        );
    }
    poller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_update_applies_within_10_s_and_a_delete_stops_and_removes_the_item() {
    let h = Harness::new().await;
    let topic = random_topic("update");
    create_topic(bootstrap(), &topic, 1).await.unwrap();
    let producer = Producer::new(bootstrap()).unwrap();
    producer.fill(&topic, 1, 40, "a").await.unwrap();
    let mut req = request("consumer", &topic);
    req.batch_size = Some(40);
    req.maximum_batching_window_in_seconds = Some(1);
    let mapping = h.create(req).await;
    let poller = h.start_poller(shipped_refresh());
    assert!(wait_for(common::WAIT, || async { h.delivered_count() == 40 }).await.is_some());
    assert!(wait_for(REACTION, || async { state(&h, &mapping.uuid).await == Some(State::Enabled) }).await.is_some());
    assert!(h.stub.invocations().iter().any(|i| i.offsets()[0].1.len() > 5), "big batches before the update");

    let update = UpdateRequest { uuid: mapping.uuid.clone(), batch_size: Some(5), ..UpdateRequest::default() };
    assert_eq!(api::update(&*h.store, &NoFunctions, update).await.unwrap().state, State::Updating);
    let took = wait_for(REACTION, || async { state(&h, &mapping.uuid).await == Some(State::Enabled) }).await;
    assert!(took.is_some(), "Updating did not become Enabled within 10 s");
    let before = h.stub.invocations().len();
    producer.fill(&topic, 1, 20, "b").await.unwrap();
    assert!(wait_for(common::WAIT, || async { h.delivered_count() == 60 }).await.is_some());
    let after: Vec<_> = h.stub.invocations().into_iter().skip(before).collect();
    assert!(after.iter().all(|i| i.offsets()[0].1.len() <= 5), "BatchSize 5 applies after the update");
    assert_eq!(
        h.delivered()[&format!("{topic}-0")],
        (0..60).collect::<Vec<i64>>(),
        "no record lost or repeated across the restart"
    );

    api::delete(&*h.store, &mapping.uuid).await.unwrap();
    let took = wait_for(REACTION, || async { state(&h, &mapping.uuid).await.is_none() }).await;
    assert!(took.is_some(), "the deleted mapping's item was not removed within 10 s");
    let invocations = h.stub.invocations().len();
    producer.fill(&topic, 1, 5, "after-delete").await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(h.stub.invocations().len(), invocations, "a deleted mapping invokes nothing");
    poller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_mappings_on_one_topic_each_get_every_record_and_one_function_takes_two_mappings() {
    let h = Harness::new().await;
    let orders = random_topic("orders");
    let refunds = random_topic("refunds");
    create_topic(bootstrap(), &orders, 2).await.unwrap();
    create_topic(bootstrap(), &refunds, 1).await.unwrap();
    let producer = Producer::new(bootstrap()).unwrap();
    producer.fill(&orders, 2, 15, "o").await.unwrap();
    producer.fill(&refunds, 1, 7, "r").await.unwrap();
    let billing = h.create(request("billing", &orders)).await;
    let audit_orders = h.create(request("audit", &orders)).await;
    let audit_refunds = h.create(request("audit", &refunds)).await;
    let per_function = |h: &Harness, f: &str| -> usize {
        h.stub
            .invocations()
            .iter()
            .filter(|i| i.succeeded && i.function == f)
            .map(|i| i.offsets().iter().map(|(_, o)| o.len()).sum::<usize>())
            .sum()
    };
    assert!(h.poll_until(settings(), |h| per_function(h, "billing") == 30 && per_function(h, "audit") == 37).await);
    for (m, topic, expected) in [
        (&billing, &orders, BTreeMap::from([(0, 15), (1, 15)])),
        (&audit_orders, &orders, BTreeMap::from([(0, 15), (1, 15)])),
        (&audit_refunds, &refunds, BTreeMap::from([(0, 7)])),
    ] {
        assert_eq!(
            committed_offsets_out_of_process(bootstrap(), &m.uuid, topic).unwrap(),
            expected,
            "group {}",
            m.uuid
        );
    }
}

//! One conformance suite for the checkpoint seam, run over the in-memory fake and over Kafka
//! group offsets on tansu: what the poll loop's tests assume of the fake holds for the real one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::bootstrap;
use kafka_esm::delivery::checkpoint::Checkpoint;
use kafka_esm::kafka::{KafkaClient, KafkaSettings, Security};
use kafka_esm::testing::MemoryCheckpoint;
use kafka_esm_testkit::kafka::{committed_offsets_out_of_process, create_topic, random_topic};

async fn conformance<C: Checkpoint>(checkpoint: &C) {
    let none = checkpoint.committed(&[0, 1, 2]).await.unwrap();
    assert_eq!(none, BTreeMap::from([(0, None), (1, None), (2, None)]), "a new group has no offsets");
    checkpoint.commit(&BTreeMap::from([(0, 5), (2, 9)])).await.unwrap();
    assert_eq!(
        checkpoint.committed(&[0, 1, 2]).await.unwrap(),
        BTreeMap::from([(0, Some(5)), (1, None), (2, Some(9))])
    );
    checkpoint.commit(&BTreeMap::from([(0, 6)])).await.unwrap();
    assert_eq!(
        checkpoint.committed(&[0, 2]).await.unwrap(),
        BTreeMap::from([(0, Some(6)), (2, Some(9))]),
        "a commit of some partitions leaves the others"
    );
}

#[tokio::test]
async fn memory_checkpoint_conforms() {
    conformance(&MemoryCheckpoint::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_group_offsets_conform_and_are_visible_to_other_clients() {
    let topic = random_topic("checkpoint");
    create_topic(bootstrap(), &topic, 3).await.unwrap();
    let group = format!("group-{}", uuid::Uuid::new_v4());
    let settings = KafkaSettings {
        bootstrap_servers: bootstrap().to_owned(),
        group_id: group.clone(),
        security: Security::Plaintext,
        fetch_wait_max_ms: 10,
        queued_max_kbytes: 1024,
        fetch_queue_backoff_ms: 10,
        request_timeout: Duration::from_secs(10),
    };
    let client = KafkaClient::new(settings, &topic, "conformance").unwrap();
    conformance(&client.checkpoint()).await;
    assert_eq!(
        committed_offsets_out_of_process(bootstrap(), &group, &topic).unwrap(),
        BTreeMap::from([(0, 6), (2, 9)])
    );
}

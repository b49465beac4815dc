//! The EventSourceMapping API over the in-memory store: rules that need no process or service
//! (the CLI's own tests, `cli.rs`, check the same API through the `esm` binary and DynamoDB).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kafka_esm::api::{self, ApiError, CreateRequest, FunctionResolver};
use kafka_esm::model::mapping::EventSourceMapping;
use kafka_esm::model::mapping::{Endpoints, KafkaEventSourceConfig, SelfManagedEventSource, StartingPosition};
use kafka_esm::model::store::{Loaded, MappingStore, Status, StoreError};
use kafka_esm::testing::MemoryMappingStore;

struct Functions;

impl FunctionResolver for Functions {
    async fn resolve(&self, name: &str) -> Result<String, ApiError> {
        Ok(format!("arn:aws:lambda:us-east-1:123456789012:function:{name}"))
    }
}

fn request(function: &str, topic: &str, brokers: &[&str]) -> CreateRequest {
    CreateRequest {
        function_name: function.into(),
        self_managed_event_source: Some(SelfManagedEventSource {
            endpoints: Endpoints { kafka_bootstrap_servers: brokers.iter().map(|b| (*b).to_owned()).collect() },
        }),
        topics: vec![topic.into()],
        starting_position: Some(StartingPosition::Latest),
        ..CreateRequest::default()
    }
}

#[tokio::test]
async fn a_second_mapping_of_one_topic_to_one_function_is_refused_naming_the_first() {
    let store = MemoryMappingStore::default();
    let first = api::create(&store, &Functions, request("f", "orders", &["a:9092", "b:9092"])).await.unwrap();
    // A retried create, the brokers listed in another order: the same mapping.
    let again = api::create(&store, &Functions, request("f", "orders", &["b:9092", "a:9092"])).await.unwrap_err();
    assert_eq!(again.code, "ResourceConflictException");
    assert!(again.message.contains(&first.uuid), "{again}");
    // Another function, another topic or another cluster: fine.
    api::create(&store, &Functions, request("g", "orders", &["a:9092"])).await.unwrap();
    api::create(&store, &Functions, request("f", "refunds", &["a:9092"])).await.unwrap();
    api::create(&store, &Functions, request("f", "orders", &["c:9092"])).await.unwrap();
    // A consumer group already used on the cluster.
    let mut shared = request("h", "payments", &["b:9092", "a:9092"]);
    shared.self_managed_kafka_event_source_config =
        Some(KafkaEventSourceConfig { consumer_group_id: Some(first.uuid.clone()), schema_registry_config: None });
    let taken = api::create(&store, &Functions, shared).await.unwrap_err();
    assert_eq!(taken.code, "ResourceConflictException");
    assert!(taken.message.contains("Consumer group"), "{taken}");
}

/// A store that yields before every call, so concurrent creates interleave.
struct Yielding(MemoryMappingStore);

impl MappingStore for Yielding {
    async fn list(&self) -> Result<Vec<Loaded>, StoreError> {
        tokio::task::yield_now().await;
        self.0.list().await
    }
    async fn get(&self, uuid: &str) -> Result<Option<Loaded>, StoreError> {
        tokio::task::yield_now().await;
        self.0.get(uuid).await
    }
    async fn create(&self, mapping: &EventSourceMapping) -> Result<(), StoreError> {
        tokio::task::yield_now().await;
        self.0.create(mapping).await
    }
    async fn replace(&self, mapping: &EventSourceMapping) -> Result<(), StoreError> {
        tokio::task::yield_now().await;
        self.0.replace(mapping).await
    }
    async fn delete(&self, uuid: &str, version: u64) -> Result<(), StoreError> {
        tokio::task::yield_now().await;
        self.0.delete(uuid, version).await
    }
    async fn set_status(&self, uuid: &str, expected_version: Option<u64>, status: &Status) -> Result<(), StoreError> {
        tokio::task::yield_now().await;
        self.0.set_status(uuid, expected_version, status).await
    }
    async fn set_processing_result(&self, uuid: &str, result: &str) -> Result<(), StoreError> {
        tokio::task::yield_now().await;
        self.0.set_processing_result(uuid, result).await
    }
}

/// Review #17: two creates racing both passed the uniqueness check.
#[tokio::test]
async fn of_two_racing_creates_of_one_topic_to_one_function_exactly_one_survives() {
    for _ in 0..20 {
        let store = Yielding(MemoryMappingStore::default());
        let (a, b) = tokio::join!(
            api::create(&store, &Functions, request("f", "orders", &["a:9092"])),
            api::create(&store, &Functions, request("f", "orders", &["a:9092"])),
        );
        assert_eq!(u8::from(a.is_ok()) + u8::from(b.is_ok()), 1, "{a:?} {b:?}");
        let refused = a.as_ref().err().or(b.as_ref().err()).unwrap();
        assert_eq!(refused.code, "ResourceConflictException");
        let stored = store.list().await.unwrap();
        assert_eq!(stored.len(), 1, "one mapping left");
        assert_eq!(stored[0].uuid(), Some(a.as_ref().or(b.as_ref()).unwrap().uuid.as_str()));
    }
}

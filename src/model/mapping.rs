//! The event source mapping: the AWS `EventSourceMappingConfiguration`, field for field, as it is
//! stored in DynamoDB and printed by `esm`.
//!
//! Field names, nesting and types follow the Lambda API so that an item written by
//! `esm create-event-source-mapping`, by `aws dynamodb put-item`, or by a custom resource reads the
//! same. Unknown fields are rejected (a typo must not silently disable a setting); the only field
//! that is not AWS's is `Version`, the optimistic-concurrency counter every write checks.

use serde::{Deserialize, Serialize};

pub use super::state::State;

/// Where to start when the consumer group has no valid committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StartingPosition {
    TrimHorizon,
    Latest,
    AtTimestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfManagedEventSource {
    #[serde(rename = "Endpoints")]
    pub endpoints: Endpoints,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoints {
    #[serde(rename = "KAFKA_BOOTSTRAP_SERVERS")]
    pub kafka_bootstrap_servers: Vec<String>,
}

/// `AmazonManagedKafkaEventSourceConfig` / `SelfManagedKafkaEventSourceConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KafkaEventSourceConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumer_group_id: Option<String>,
    /// Not supported: refused by validation (it would change what the function receives).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_registry_config: Option<serde_json::Value>,
}

/// One `{Type, URI}` entry of `SourceAccessConfigurations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceAccessConfiguration {
    #[serde(rename = "Type")]
    pub kind: SourceAccessType,
    #[serde(rename = "URI")]
    pub uri: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SourceAccessType {
    BasicAuth,
    VpcSubnet,
    VpcSecurityGroup,
    #[serde(rename = "SASL_SCRAM_512_AUTH")]
    SaslScram512Auth,
    #[serde(rename = "SASL_SCRAM_256_AUTH")]
    SaslScram256Auth,
    VirtualHost,
    ClientCertificateTlsAuth,
    ServerRootCaCertificate,
}

/// `ProvisionedPollerConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ProvisionedPollerConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimum_pollers: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_pollers: Option<u32>,
}

/// `ScalingConfig`. AWS accepts it for SQS only; kafka-esm applies it to Kafka mappings
/// ([`crate::coordination::concurrency`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ScalingConfig {
    /// Invokes of the mapping in flight at once, over all its partitions and pollers (2–1000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_concurrency: Option<u32>,
}

/// An event source mapping, exactly as the Lambda API's `EventSourceMappingConfiguration` spells
/// it (plus `Version`). Field order is the order the AWS CLI prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct EventSourceMapping {
    #[serde(rename = "UUID")]
    pub uuid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starting_position: Option<StartingPosition>,
    /// Seconds since the epoch (the API's timestamp type).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starting_position_timestamp: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_batching_window_in_seconds: Option<u32>,
    /// Batches of one partition in flight at once, records of one key in order (1–10). AWS
    /// accepts it only for Kinesis and DynamoDB streams; kafka-esm applies it to Kafka partitions
    /// ([`crate::delivery::keyed`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallelization_factor: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_source_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter_criteria: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_config: Option<serde_json::Value>,
    /// `MaximumConcurrency`: the most invokes in flight for the mapping at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scaling_config: Option<ScalingConfig>,
    pub function_arn: String,
    /// Seconds since the epoch, fractional.
    pub last_modified: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_processing_result: Option<String>,
    pub state: State,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_transition_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination_config: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_access_configurations: Option<Vec<SourceAccessConfiguration>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub self_managed_event_source: Option<SelfManagedEventSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_record_age_in_seconds: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bisect_batch_on_function_error: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_retry_attempts: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_response_types: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amazon_managed_kafka_event_source_config: Option<KafkaEventSourceConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub self_managed_kafka_event_source_config: Option<KafkaEventSourceConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_source_mapping_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provisioned_poller_config: Option<ProvisionedPollerConfig>,
    /// The mapping's tags (`TagResource`, `CreateEventSourceMapping --tags`). Not part of the
    /// AWS mapping shape: `get`/`list` do not show them, `list-tags` does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<std::collections::BTreeMap<String, String>>,
    /// kafka-esm's optimistic-concurrency counter: every write is conditional on it.
    #[serde(default)]
    pub version: u64,
}

/// The Kafka side of a mapping, as the poller needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KafkaCluster {
    /// Bootstrap servers to be resolved from the MSK control plane.
    Msk {
        cluster_arn: String,
    },
    SelfManaged {
        bootstrap_servers: Vec<String>,
    },
}

impl EventSourceMapping {
    /// `ScalingConfig.MaximumConcurrency`, when set.
    pub fn maximum_concurrency(&self) -> Option<u32> {
        self.scaling_config.as_ref().and_then(|c| c.maximum_concurrency)
    }

    /// The single topic (validated mappings have exactly one).
    pub fn topic(&self) -> &str {
        self.topics.first().map_or("", String::as_str)
    }

    /// The consumer group: the configured `ConsumerGroupId`, or the UUID as AWS does.
    pub fn consumer_group_id(&self) -> &str {
        self.amazon_managed_kafka_event_source_config
            .as_ref()
            .or(self.self_managed_kafka_event_source_config.as_ref())
            .and_then(|c| c.consumer_group_id.as_deref())
            .unwrap_or(&self.uuid)
    }

    pub fn cluster(&self) -> KafkaCluster {
        match (&self.event_source_arn, &self.self_managed_event_source) {
            (Some(arn), _) => KafkaCluster::Msk { cluster_arn: arn.clone() },
            (None, Some(source)) => {
                KafkaCluster::SelfManaged { bootstrap_servers: source.endpoints.kafka_bootstrap_servers.clone() }
            }
            (None, None) => KafkaCluster::SelfManaged { bootstrap_servers: Vec::new() },
        }
    }

    /// `StartingPositionTimestamp` in epoch milliseconds.
    pub fn starting_timestamp_ms(&self) -> Option<i64> {
        #[allow(clippy::cast_possible_truncation)]
        self.starting_position_timestamp.map(|s| (s * 1000.0) as i64)
    }

    /// The `source_access_configurations` entries of one type.
    pub fn access(&self, kind: SourceAccessType) -> impl Iterator<Item = &SourceAccessConfiguration> {
        self.source_access_configurations.iter().flatten().filter(move |c| c.kind == kind)
    }
}

/// Kafka's rule for topic names (`Topic.validate`): 1–249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn is_topic_name(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

//! The event source mapping: the AWS `EventSourceMappingConfiguration`, field for field, as it is
//! stored in DynamoDB and printed by `esm`.
//!
//! Field names, nesting and types follow the Lambda API so that an item written by
//! `esm create-event-source-mapping`, by `aws dynamodb put-item`, or by a custom resource reads the
//! same. Unknown fields are rejected (a typo must not silently disable a setting); the only field
//! that is not AWS's is `Version`, the optimistic-concurrency counter every write checks.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::batch::{BatchLimits, default_batch_size, default_batching_window};
use crate::event::{EventSource, MAX_PAYLOAD_BYTES};

/// `BatchSize` range for Kafka sources.
pub const BATCH_SIZE_RANGE: std::ops::RangeInclusive<u32> = 1..=10_000;
/// `MaximumBatchingWindowInSeconds` range.
pub const BATCHING_WINDOW_RANGE: std::ops::RangeInclusive<u32> = 0..=300;
/// `SelfManagedEventSource.Endpoints.KAFKA_BOOTSTRAP_SERVERS`: 1–10 `host:port`.
pub const MAX_BOOTSTRAP_SERVERS: usize = 10;
/// Consumer group id length limit.
pub const MAX_CONSUMER_GROUP_ID_LEN: usize = 200;

/// Lifecycle states, as the Lambda API names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum State {
    Creating,
    Enabling,
    Enabled,
    Disabling,
    Disabled,
    Updating,
    Deleting,
}

impl State {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "Creating",
            Self::Enabling => "Enabling",
            Self::Enabled => "Enabled",
            Self::Disabling => "Disabling",
            Self::Disabled => "Disabled",
            Self::Updating => "Updating",
            Self::Deleting => "Deleting",
        }
    }

    /// Whether a poller should be consuming for a mapping in this state. Transitional states
    /// towards running (`Creating`, `Enabling`, `Updating`) count: the poller moves them on.
    pub const fn wants_consumer(self) -> bool {
        matches!(self, Self::Creating | Self::Enabling | Self::Enabled | Self::Updating)
    }
}

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
    /// Stored, not yet enforced (schema registry integration).
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_source_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter_criteria: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_config: Option<serde_json::Value>,
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
    /// kafka-esm's optimistic-concurrency counter: every write is conditional on it.
    #[serde(default)]
    pub version: u64,
}

/// A configuration problem, naming the field and what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidMapping {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> InvalidMapping {
    InvalidMapping { field, message: message.into() }
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
    /// Checks the rules AWS applies to a stored mapping (ranges, required fields, formats).
    ///
    /// # Errors
    /// The first rule broken, naming the field.
    pub fn validate(&self) -> Result<(), InvalidMapping> {
        if uuid::Uuid::parse_str(&self.uuid).is_err() {
            return Err(invalid("UUID", format!("'{}' is not a UUID", self.uuid)));
        }
        if self.function_arn.trim().is_empty() {
            return Err(invalid("FunctionArn", "is required"));
        }
        match (&self.event_source_arn, &self.self_managed_event_source) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "EventSourceArn",
                    "give either EventSourceArn or SelfManagedEventSource, not both",
                ));
            }
            (None, None) => {
                return Err(invalid(
                    "EventSourceArn",
                    "one of EventSourceArn (an MSK cluster) or SelfManagedEventSource is required",
                ));
            }
            (Some(arn), None) => validate_msk_arn(arn)?,
            (None, Some(source)) => validate_bootstrap_servers(&source.endpoints.kafka_bootstrap_servers)?,
        }
        match self.topics.as_slice() {
            [topic] => validate_topic(topic)?,
            [] => return Err(invalid("Topics", "one topic is required")),
            _ => {
                return Err(invalid(
                    "Topics",
                    "exactly one topic per mapping, as in AWS; create one mapping per topic",
                ));
            }
        }
        match self.starting_position {
            None => {
                return Err(invalid("StartingPosition", "is required: TRIM_HORIZON, LATEST or AT_TIMESTAMP"));
            }
            Some(StartingPosition::AtTimestamp) => match self.starting_position_timestamp {
                None => {
                    return Err(invalid("StartingPositionTimestamp", "is required with AT_TIMESTAMP"));
                }
                Some(ts) if !ts.is_finite() || ts < 0.0 => {
                    return Err(invalid("StartingPositionTimestamp", "must be seconds since the epoch"));
                }
                Some(_) => {}
            },
            Some(_) if self.starting_position_timestamp.is_some() => {
                return Err(invalid("StartingPositionTimestamp", "is only allowed with StartingPosition AT_TIMESTAMP"));
            }
            Some(_) => {}
        }
        if let Some(size) = self.batch_size
            && !BATCH_SIZE_RANGE.contains(&size)
        {
            return Err(invalid("BatchSize", format!("{size} is out of range: 1 to 10000")));
        }
        if let Some(window) = self.maximum_batching_window_in_seconds
            && !BATCHING_WINDOW_RANGE.contains(&window)
        {
            return Err(invalid("MaximumBatchingWindowInSeconds", format!("{window} is out of range: 0 to 300")));
        }
        for (field, config) in [
            ("AmazonManagedKafkaEventSourceConfig.ConsumerGroupId", &self.amazon_managed_kafka_event_source_config),
            ("SelfManagedKafkaEventSourceConfig.ConsumerGroupId", &self.self_managed_kafka_event_source_config),
        ] {
            if let Some(id) = config.as_ref().and_then(|c| c.consumer_group_id.as_deref()) {
                validate_consumer_group_id(field, id)?;
            }
        }
        Ok(())
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

    pub fn event_source(&self) -> EventSource {
        match &self.event_source_arn {
            Some(arn) => EventSource::Msk { cluster_arn: arn.clone() },
            None => EventSource::SelfManaged,
        }
    }

    /// `BatchSize`, the batching window (500 ms for Kafka when never set) and the 6 MB rule.
    pub fn batch_limits(&self) -> BatchLimits {
        BatchLimits {
            max_records: self.batch_size.unwrap_or_else(default_batch_size) as usize,
            window: self
                .maximum_batching_window_in_seconds
                .map_or_else(default_batching_window, |s| Duration::from_secs(u64::from(s))),
            max_payload_bytes: MAX_PAYLOAD_BYTES,
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

/// `LastModified`: now, in fractional epoch seconds with millisecond precision like AWS.
pub fn now_epoch_seconds() -> f64 {
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    #[allow(clippy::cast_precision_loss)]
    let seconds = ms as f64 / 1000.0;
    seconds
}

/// `arn:aws:kafka:REGION:ACCOUNT:cluster/NAME/UUID`.
pub fn validate_msk_arn(arn: &str) -> Result<(), InvalidMapping> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "kafka"
        && !parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5].strip_prefix("cluster/").is_some_and(|rest| {
            let mut it = rest.split('/');
            matches!((it.next(), it.next(), it.next()), (Some(n), Some(id), None) if !n.is_empty() && !id.is_empty())
        });
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "EventSourceArn",
            format!("'{arn}' is not an MSK cluster ARN (arn:aws:kafka:REGION:ACCOUNT:cluster/NAME/UUID)"),
        ))
    }
}

fn validate_bootstrap_servers(servers: &[String]) -> Result<(), InvalidMapping> {
    const FIELD: &str = "SelfManagedEventSource.Endpoints.KAFKA_BOOTSTRAP_SERVERS";
    if servers.is_empty() || servers.len() > MAX_BOOTSTRAP_SERVERS {
        return Err(invalid(FIELD, format!("give 1 to {MAX_BOOTSTRAP_SERVERS} host:port entries")));
    }
    for server in servers {
        let valid = server.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && !host.contains(',') && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !valid {
            return Err(invalid(FIELD, format!("'{server}' is not host:port")));
        }
    }
    Ok(())
}

fn validate_topic(topic: &str) -> Result<(), InvalidMapping> {
    let valid = !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(invalid("Topics", format!("'{topic}' is not a valid Kafka topic name (1-249 of [a-zA-Z0-9._-])")))
    }
}

fn validate_consumer_group_id(field: &'static str, id: &str) -> Result<(), InvalidMapping> {
    let valid = !id.is_empty()
        && id.len() <= MAX_CONSUMER_GROUP_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-/*:_+=.@".contains(&b));
    if valid { Ok(()) } else { Err(invalid(field, format!("'{id}' must be 1-200 characters of [a-zA-Z0-9-/*:_+=.@]"))) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn example() -> serde_json::Value {
        json!({
            "UUID": "6d9bce8e-836b-442c-8070-74e77903c815",
            "StartingPosition": "LATEST",
            "BatchSize": 100,
            "FunctionArn": "arn:aws:lambda:us-west-2:111111111111:function:my-kafka-function",
            "LastModified": 1580331394.363,
            "LastProcessingResult": "OK",
            "State": "Enabled",
            "StateTransitionReason": "USER_INITIATED",
            "Topics": ["AWSKafkaTopic"],
            "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["b-1:9092", "b-2:9092"]}},
            "Version": 3
        })
    }

    #[test]
    fn round_trips_the_aws_shape_and_derives_defaults() {
        let m: EventSourceMapping = serde_json::from_value(example()).unwrap();
        m.validate().unwrap();
        assert_eq!(serde_json::to_value(&m).unwrap(), example());
        assert_eq!(m.consumer_group_id(), "6d9bce8e-836b-442c-8070-74e77903c815");
        assert_eq!(m.batch_limits().window, Duration::from_millis(500));
        assert_eq!(m.batch_limits().max_records, 100);
        assert_eq!(
            m.cluster(),
            KafkaCluster::SelfManaged { bootstrap_servers: vec!["b-1:9092".into(), "b-2:9092".into()] }
        );
    }

    #[test]
    fn rejects_unknown_fields_and_each_broken_rule() {
        let mut v = example();
        v["BatchSzie"] = json!(5);
        assert!(serde_json::from_value::<EventSourceMapping>(v).is_err());

        let cases: Vec<(serde_json::Value, &str)> = vec![
            (json!({"BatchSize": 0}), "BatchSize"),
            (json!({"BatchSize": 10001}), "BatchSize"),
            (json!({"MaximumBatchingWindowInSeconds": 301}), "MaximumBatchingWindowInSeconds"),
            (json!({"Topics": ["a", "b"]}), "Topics"),
            (json!({"Topics": ["bad topic"]}), "Topics"),
            (json!({"StartingPosition": "AT_TIMESTAMP"}), "StartingPositionTimestamp"),
            (json!({"StartingPositionTimestamp": 5.0}), "StartingPositionTimestamp"),
            (json!({"EventSourceArn": "arn:aws:kafka:us-east-1:111111111111:cluster/x/y"}), "EventSourceArn"),
            (
                json!({"SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["nope"]}}}),
                "SelfManagedEventSource.Endpoints.KAFKA_BOOTSTRAP_SERVERS",
            ),
            (
                json!({"SelfManagedKafkaEventSourceConfig": {"ConsumerGroupId": "bad group!"}}),
                "SelfManagedKafkaEventSourceConfig.ConsumerGroupId",
            ),
            (json!({"UUID": "not-a-uuid"}), "UUID"),
        ];
        for (patch, field) in cases {
            let mut v = example();
            for (k, val) in patch.as_object().unwrap() {
                v[k] = val.clone();
            }
            let m: EventSourceMapping = serde_json::from_value(v).unwrap();
            assert_eq!(m.validate().unwrap_err().field, field, "patch {patch}");
        }
    }

    #[test]
    fn msk_arn_and_group_override() {
        let mut v = example();
        v.as_object_mut().unwrap().remove("SelfManagedEventSource");
        v["EventSourceArn"] =
            json!("arn:aws:kafka:us-west-2:111111111111:cluster/my-cluster/fc2f5bdf-fd1b-45ad-85dd-15b4a5a6247e-2");
        v["AmazonManagedKafkaEventSourceConfig"] = json!({"ConsumerGroupId": "orders-readers"});
        let m: EventSourceMapping = serde_json::from_value(v).unwrap();
        m.validate().unwrap();
        assert_eq!(m.consumer_group_id(), "orders-readers");
        assert!(matches!(m.event_source(), EventSource::Msk { .. }));
    }
}

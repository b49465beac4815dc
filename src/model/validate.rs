//! Every rule a stored mapping must follow (ranges, required fields, formats), in one place: the
//! API refuses a request that breaks one, and a poller disables a hand-written item that does
//! (`ESM_CONFIG_NOT_VALID`, naming the field).

pub use super::invalid::InvalidMapping;
use super::invalid::invalid;
use super::mapping::{EventSourceMapping, StartingPosition, is_topic_name};

/// `BatchSize` range for Kafka sources.
pub const BATCH_SIZE_RANGE: std::ops::RangeInclusive<u32> = 1..=10_000;
/// `ParallelizationFactor` range (AWS's, for the streams it accepts it for).
pub const PARALLELIZATION_FACTOR_RANGE: std::ops::RangeInclusive<u32> = 1..=10;
/// `ScalingConfig.MaximumConcurrency` range (AWS's, for SQS).
pub const MAXIMUM_CONCURRENCY_RANGE: std::ops::RangeInclusive<u32> = 2..=1000;
/// `MaximumBatchingWindowInSeconds` range.
pub const BATCHING_WINDOW_RANGE: std::ops::RangeInclusive<u32> = 0..=300;
/// `SelfManagedEventSource.Endpoints.KAFKA_BOOTSTRAP_SERVERS`: 1–10 `host:port`.
pub const MAX_BOOTSTRAP_SERVERS: usize = 10;
/// Consumer group id length limit.
pub const MAX_CONSUMER_GROUP_ID_LEN: usize = 200;

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
        if let Some(factor) = self.parallelization_factor
            && !PARALLELIZATION_FACTOR_RANGE.contains(&factor)
        {
            return Err(invalid(
                "ParallelizationFactor",
                format!("{factor} is out of range: 1 to 10 (batches of one partition in flight at once)"),
            ));
        }
        if let Some(config) = &self.scaling_config {
            match config.maximum_concurrency {
                None => return Err(invalid("ScalingConfig.MaximumConcurrency", "is required in ScalingConfig")),
                Some(n) if !MAXIMUM_CONCURRENCY_RANGE.contains(&n) => {
                    return Err(invalid(
                        "ScalingConfig.MaximumConcurrency",
                        format!("{n} is out of range: 2 to 1000 (invokes of the mapping in flight at once)"),
                    ));
                }
                Some(_) => {}
            }
        }
        for (field, config) in [
            ("AmazonManagedKafkaEventSourceConfig.ConsumerGroupId", &self.amazon_managed_kafka_event_source_config),
            ("SelfManagedKafkaEventSourceConfig.ConsumerGroupId", &self.self_managed_kafka_event_source_config),
        ] {
            if let Some(id) = config.as_ref().and_then(|c| c.consumer_group_id.as_deref()) {
                validate_consumer_group_id(field, id)?;
            }
        }
        for (field, config) in [
            (
                "AmazonManagedKafkaEventSourceConfig.SchemaRegistryConfig",
                &self.amazon_managed_kafka_event_source_config,
            ),
            ("SelfManagedKafkaEventSourceConfig.SchemaRegistryConfig", &self.self_managed_kafka_event_source_config),
        ] {
            if config.as_ref().is_some_and(|c| c.schema_registry_config.is_some()) {
                return Err(invalid(
                    field,
                    "is not supported by kafka-esm: records reach the function as base64 bytes, as without a schema registry; remove it",
                ));
            }
        }
        self.validate_settings()
    }

    fn validate_settings(&self) -> Result<(), InvalidMapping> {
        validate_settings(self)
    }
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
    if is_topic_name(topic) {
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

/// The record-fate, polling and metrics settings, held to AWS's ranges and formats.
fn validate_settings(mapping: &EventSourceMapping) -> Result<(), InvalidMapping> {
    let invalid = |field: &'static str, message: String| Err(InvalidMapping { field, message });
    if let Some(n) = mapping.maximum_retry_attempts
        && n != -1
        && !(0..=10_000).contains(&n)
    {
        return invalid("MaximumRetryAttempts", format!("{n} is out of range: -1 (infinite) or 0 to 10000"));
    }
    if let Some(n) = mapping.maximum_record_age_in_seconds
        && n != -1
        && !(60..=604_800).contains(&n)
    {
        return invalid("MaximumRecordAgeInSeconds", format!("{n} is out of range: -1 (infinite) or 60 to 604800"));
    }
    if let Some(config) = &mapping.provisioned_poller_config {
        // Unset bounds take AWS's Kafka defaults (1 and 200).
        let min = config.minimum_pollers.unwrap_or(1);
        let max = config.maximum_pollers.unwrap_or(200);
        if !(1..=200).contains(&min) {
            return invalid("ProvisionedPollerConfig.MinimumPollers", format!("{min} is out of range: 1 to 200"));
        }
        if !(1..=2_000).contains(&max) {
            return invalid("ProvisionedPollerConfig.MaximumPollers", format!("{max} is out of range: 1 to 2000"));
        }
        if min > max {
            return invalid(
                "ProvisionedPollerConfig",
                format!("MinimumPollers ({min}) must not be greater than MaximumPollers ({max})"),
            );
        }
    }
    if let Some(types) = &mapping.function_response_types {
        if let Some(bad) = types.iter().find(|t| *t != "ReportBatchItemFailures") {
            return invalid("FunctionResponseTypes", format!("'{bad}' is not one of: ReportBatchItemFailures"));
        }
        if types.len() > 1 {
            return invalid("FunctionResponseTypes", "give ReportBatchItemFailures at most once".to_owned());
        }
    }
    if let Some(config) = &mapping.metrics_config {
        validate_metrics_config(config).or_else(|m| invalid("MetricsConfig", m))?;
    }
    if let Some(config) = &mapping.destination_config {
        validate_destination_config(config).or_else(|m| invalid("DestinationConfig", m))?;
    }
    if let Some(criteria) = &mapping.filter_criteria {
        validate_filter_criteria(criteria).or_else(|m| invalid("FilterCriteria", m))?;
    }
    super::access::access_plan(mapping, &mapping.cluster())?;
    Ok(())
}

/// `{"Metrics": [...]}`, each of `EventCount`, `ErrorCount`, `KafkaMetrics` at most once.
fn validate_metrics_config(config: &serde_json::Value) -> Result<(), String> {
    const METRICS: [&str; 3] = ["EventCount", "ErrorCount", "KafkaMetrics"];
    let obj = config.as_object().ok_or("must be an object {\"Metrics\": [...]}")?;
    if let Some(key) = obj.keys().find(|k| *k != "Metrics") {
        return Err(format!("unknown field '{key}'; the only field is Metrics"));
    }
    let Some(metrics) = obj.get("Metrics") else { return Ok(()) };
    let metrics = metrics.as_array().ok_or("Metrics must be a list")?;
    let mut seen = Vec::new();
    for metric in metrics {
        match metric.as_str() {
            Some(m) if METRICS.contains(&m) && !seen.contains(&m) => seen.push(m),
            Some(m) if seen.contains(&m) => return Err(format!("Metrics lists '{m}' twice")),
            _ => return Err(format!("Metrics value {metric} is not one of: EventCount, ErrorCount, KafkaMetrics")),
        }
    }
    Ok(())
}

/// `{"OnFailure": {"Destination": ...}}` where the destination is an SQS queue, SNS topic or S3
/// bucket ARN, or `kafka://TOPIC`. AWS refuses `OnSuccess` on event source mappings.
fn validate_destination_config(config: &serde_json::Value) -> Result<(), String> {
    let obj = config.as_object().ok_or("must be an object {\"OnFailure\": {\"Destination\": ...}}")?;
    for key in obj.keys() {
        match key.as_str() {
            "OnFailure" => {}
            "OnSuccess" => return Err("OnSuccess is not supported for event source mappings; use OnFailure".into()),
            other => return Err(format!("unknown field '{other}'; use OnFailure")),
        }
    }
    let Some(on_failure) = obj.get("OnFailure") else { return Ok(()) };
    let on_failure = on_failure.as_object().ok_or("OnFailure must be an object {\"Destination\": ...}")?;
    if let Some(key) = on_failure.keys().find(|k| *k != "Destination") {
        return Err(format!("unknown field 'OnFailure.{key}'; the only field is Destination"));
    }
    let Some(destination) = on_failure.get("Destination") else { return Ok(()) };
    let destination = destination.as_str().ok_or("OnFailure.Destination must be a string")?;
    if destination_is_valid(destination) {
        Ok(())
    } else {
        Err(format!(
            "OnFailure.Destination '{destination}' is not an SQS queue, SNS topic or S3 bucket ARN, kafka://TOPIC or kafka://HOST:PORT[,HOST:PORT]/TOPIC"
        ))
    }
}

fn destination_is_valid(destination: &str) -> bool {
    super::destination::Target::parse(destination).is_some()
}

/// `{"Filters": [{"Pattern": "<JSON text>"}, ...]}`: the Lambda event-filter grammar, compiled
/// as the poller will run it, so every pattern the poller could not run is refused here.
fn validate_filter_criteria(criteria: &serde_json::Value) -> Result<(), String> {
    crate::delivery::filter::Filters::compile(criteria).map(|_| ()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::mapping::KafkaCluster;
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
            (
                json!({"SelfManagedKafkaEventSourceConfig": {"SchemaRegistryConfig": {"SchemaRegistryURI": "https://r"}}}),
                "SelfManagedKafkaEventSourceConfig.SchemaRegistryConfig",
            ),
            (json!({"MaximumRetryAttempts": -2}), "MaximumRetryAttempts"),
            (json!({"MaximumRetryAttempts": 10001}), "MaximumRetryAttempts"),
            (json!({"MaximumRecordAgeInSeconds": 59}), "MaximumRecordAgeInSeconds"),
            (json!({"MaximumRecordAgeInSeconds": 604801}), "MaximumRecordAgeInSeconds"),
            (json!({"FunctionResponseTypes": ["Partial"]}), "FunctionResponseTypes"),
            (json!({"DestinationConfig": {"OnFailure": {"Destination": "kafka://a/t"}}}), "DestinationConfig"),
            (json!({"DestinationConfig": {"OnSuccess": {"Destination": "kafka://t"}}}), "DestinationConfig"),
            (json!({"FilterCriteria": {"Filters": [{"Pattern": "{\"value\":[{\"prefix\":1}]}"}]}}), "FilterCriteria"),
            (json!({"FilterCriteria": {"Filters": [{"Pattern": "{\"value\":\"x\"}"}]}}), "FilterCriteria"),
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
    fn fate_settings_within_range_are_accepted() {
        let mut v = example();
        v["MaximumRetryAttempts"] = json!(10000);
        v["MaximumRecordAgeInSeconds"] = json!(604800);
        v["BisectBatchOnFunctionError"] = json!(true);
        v["FunctionResponseTypes"] = json!(["ReportBatchItemFailures"]);
        v["FilterCriteria"] = json!({"Filters": [{"Pattern": "{\"value\":{\"a\":[{\"prefix\":\"x\"}]}}"}]});
        for destination in
            ["kafka://dlt", "kafka://a:9092,b:9093/dlt", "arn:aws:sqs:us-east-1:123456789012:q", "arn:aws:s3:::b"]
        {
            v["DestinationConfig"] = json!({"OnFailure": {"Destination": destination}});
            let m: EventSourceMapping = serde_json::from_value(v.clone()).unwrap();
            m.validate().unwrap();
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
        assert!(matches!(m.cluster(), KafkaCluster::Msk { .. }));
    }
}

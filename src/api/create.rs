//! `CreateEventSourceMapping`.

use serde::Deserialize;

use super::{ApiError, FunctionResolver};
use crate::clock::now_epoch_seconds;
use crate::model::mapping::{
    EventSourceMapping, KafkaCluster, KafkaEventSourceConfig, ProvisionedPollerConfig, ScalingConfig,
    SelfManagedEventSource, SourceAccessConfiguration, StartingPosition, State,
};
use crate::model::store::{Loaded, MappingStore};
use crate::model::validate::validate_msk_arn;

/// `CreateEventSourceMapping`'s Kafka-relevant parameters, named as in the API (and in
/// `--cli-input-json`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CreateRequest {
    pub function_name: String,
    pub event_source_arn: Option<String>,
    pub self_managed_event_source: Option<SelfManagedEventSource>,
    #[serde(default)]
    pub topics: Vec<String>,
    pub starting_position: Option<StartingPosition>,
    pub starting_position_timestamp: Option<f64>,
    pub batch_size: Option<u32>,
    pub maximum_batching_window_in_seconds: Option<u32>,
    pub parallelization_factor: Option<u32>,
    pub enabled: Option<bool>,
    pub amazon_managed_kafka_event_source_config: Option<KafkaEventSourceConfig>,
    pub self_managed_kafka_event_source_config: Option<KafkaEventSourceConfig>,
    pub source_access_configurations: Option<Vec<SourceAccessConfiguration>>,
    pub filter_criteria: Option<serde_json::Value>,
    pub destination_config: Option<serde_json::Value>,
    pub maximum_retry_attempts: Option<i32>,
    pub maximum_record_age_in_seconds: Option<i32>,
    pub bisect_batch_on_function_error: Option<bool>,
    pub function_response_types: Option<Vec<String>>,
    pub provisioned_poller_config: Option<ProvisionedPollerConfig>,
    pub metrics_config: Option<serde_json::Value>,
    pub scaling_config: Option<ScalingConfig>,
    pub tags: Option<std::collections::BTreeMap<String, String>>,
}

/// Region and account for `EventSourceMappingArn`, taken from the function's ARN.
fn mapping_arn(function_arn: &str, uuid: &str) -> Option<String> {
    let parts: Vec<&str> = function_arn.split(':').collect();
    match parts.as_slice() {
        ["arn", partition, "lambda", region, account, "function", ..] => {
            Some(format!("arn:{partition}:lambda:{region}:{account}:event-source-mapping:{uuid}"))
        }
        _ => None,
    }
}

/// `CreateEventSourceMapping`.
///
/// # Errors
/// `InvalidParameterValueException` naming what to fix, `ResourceNotFoundException` for a
/// missing function, `ResourceConflictException` for a consumer group already in use.
pub async fn create<S: MappingStore, F: FunctionResolver>(
    store: &S,
    functions: &F,
    request: CreateRequest,
) -> Result<EventSourceMapping, ApiError> {
    if let Some(arn) = &request.event_source_arn {
        validate_msk_arn(arn)?;
    }
    if let (Some(ts), Some(StartingPosition::AtTimestamp)) =
        (request.starting_position_timestamp, request.starting_position)
        && ts > now_epoch_seconds() + 1.0
    {
        return Err(ApiError::invalid("StartingPositionTimestamp must not be in the future."));
    }
    if request.amazon_managed_kafka_event_source_config.is_some() && request.event_source_arn.is_none() {
        return Err(ApiError::invalid(
            "AmazonManagedKafkaEventSourceConfig is only for Amazon MSK (EventSourceArn) mappings; use SelfManagedKafkaEventSourceConfig.",
        ));
    }
    if request.self_managed_kafka_event_source_config.is_some() && request.self_managed_event_source.is_none() {
        return Err(ApiError::invalid(
            "SelfManagedKafkaEventSourceConfig is only for SelfManagedEventSource mappings; use AmazonManagedKafkaEventSourceConfig.",
        ));
    }
    if let Some(tags) = &request.tags {
        super::tags::validate_new(tags)?;
    }
    let function_arn = functions.resolve(&request.function_name).await?;
    let uuid = uuid::Uuid::new_v4().to_string();
    let enabled = request.enabled.unwrap_or(true);
    let mut mapping = EventSourceMapping {
        uuid: uuid.clone(),
        starting_position: request.starting_position,
        starting_position_timestamp: request.starting_position_timestamp,
        batch_size: Some(request.batch_size.unwrap_or_else(crate::delivery::batch::default_batch_size)),
        maximum_batching_window_in_seconds: request.maximum_batching_window_in_seconds,
        parallelization_factor: request.parallelization_factor,
        event_source_arn: request.event_source_arn,
        filter_criteria: request.filter_criteria,
        function_arn: function_arn.clone(),
        last_modified: now_epoch_seconds(),
        last_processing_result: Some("No records processed".to_owned()),
        // A disabled mapping has nothing to create: it starts out Disabled.
        state: if enabled { State::Creating } else { State::Disabled },
        state_transition_reason: Some("USER_INITIATED".to_owned()),
        destination_config: request.destination_config,
        topics: request.topics,
        source_access_configurations: request.source_access_configurations,
        self_managed_event_source: request.self_managed_event_source,
        maximum_record_age_in_seconds: request.maximum_record_age_in_seconds,
        bisect_batch_on_function_error: request.bisect_batch_on_function_error,
        maximum_retry_attempts: request.maximum_retry_attempts,
        function_response_types: request.function_response_types,
        amazon_managed_kafka_event_source_config: request.amazon_managed_kafka_event_source_config,
        self_managed_kafka_event_source_config: request.self_managed_kafka_event_source_config,
        event_source_mapping_arn: mapping_arn(&function_arn, &uuid),
        metrics_config: request.metrics_config,
        scaling_config: request.scaling_config,
        provisioned_poller_config: request.provisioned_poller_config,
        tags: request.tags.filter(|t| !t.is_empty()),
        version: 1,
    };
    // AWS echoes the consumer group it will use.
    if mapping.event_source_arn.is_some() {
        mapping
            .amazon_managed_kafka_event_source_config
            .get_or_insert_with(|| KafkaEventSourceConfig { consumer_group_id: None, schema_registry_config: None });
    } else {
        mapping
            .self_managed_kafka_event_source_config
            .get_or_insert_with(|| KafkaEventSourceConfig { consumer_group_id: None, schema_registry_config: None });
    }
    for config in
        [&mut mapping.amazon_managed_kafka_event_source_config, &mut mapping.self_managed_kafka_event_source_config]
            .into_iter()
            .flatten()
    {
        config.consumer_group_id.get_or_insert_with(|| uuid.clone());
    }
    mapping.validate()?;
    ensure_unique(store, &mapping, |_| true).await?;
    store.create(&mapping).await.map_err(|e| ApiError::service(&e))?;
    // Two creates racing both pass the check above (review #17): looked at again after the write,
    // the later of two conflicting mappings (by LastModified, then UUID) removes itself, so
    // exactly one survives, whatever the interleaving.
    let ours = (mapping.last_modified, mapping.uuid.clone());
    let earlier = |other: &EventSourceMapping| (other.last_modified, other.uuid.clone()) < ours;
    if let Err(conflict) = ensure_unique(store, &mapping, earlier).await {
        withdraw(store, &mapping).await?;
        return Err(conflict);
    }
    Ok(mapping)
}

/// Deletes a mapping this create just wrote, at whatever version a poller may have moved it to.
async fn withdraw<S: MappingStore>(store: &S, mapping: &EventSourceMapping) -> Result<(), ApiError> {
    let mut version = mapping.version;
    for _ in 0..5 {
        match store.delete(&mapping.uuid, version).await {
            Ok(()) => return Ok(()),
            Err(e) => match store.get(&mapping.uuid).await.map_err(|e| ApiError::service(&e))? {
                None => return Ok(()),
                Some(Loaded::Valid(current) | Loaded::Invalid { mapping: current, .. })
                    if current.version != version =>
                {
                    version = current.version;
                }
                Some(_) => return Err(ApiError::service(&e)),
            },
        }
    }
    Err(ApiError {
        code: "ServiceException",
        message: format!("Could not remove the duplicate event source mapping {}; delete it.", mapping.uuid),
    })
}

/// Two mappings sharing a consumer group on one cluster would steal each other's offsets; two
/// mappings of one topic to one function deliver every record twice (a retried create is the
/// usual cause). AWS refuses both.
/// Only the other mappings `counts` says are checked.
async fn ensure_unique<S: MappingStore>(
    store: &S,
    mapping: &EventSourceMapping,
    counts: impl Fn(&EventSourceMapping) -> bool,
) -> Result<(), ApiError> {
    let group = mapping.consumer_group_id();
    let same_cluster = |other: &EventSourceMapping| normalized(other) == normalized(mapping);
    for other in store.list().await.map_err(|e| ApiError::service(&e))? {
        let (Loaded::Valid(other) | Loaded::Invalid { mapping: other, .. }) = other else { continue };
        if other.uuid == mapping.uuid || !same_cluster(&other) || !counts(&other) {
            continue;
        }
        if other.consumer_group_id() == group {
            return Err(ApiError::conflict(format!(
                "Consumer group {group} is already used by event source mapping {} on this cluster. Choose another ConsumerGroupId.",
                other.uuid
            )));
        }
        if other.topic() == mapping.topic() && other.function_arn == mapping.function_arn {
            return Err(ApiError::conflict(format!(
                "An event source mapping of topic {} to function {} already exists on this cluster: {}. Update or delete it instead.",
                mapping.topic(),
                mapping.function_arn,
                other.uuid
            )));
        }
    }
    Ok(())
}

/// The cluster, with a self-managed broker list compared as a set.
fn normalized(mapping: &EventSourceMapping) -> KafkaCluster {
    match mapping.cluster() {
        KafkaCluster::SelfManaged { mut bootstrap_servers } => {
            bootstrap_servers.sort();
            bootstrap_servers.dedup();
            KafkaCluster::SelfManaged { bootstrap_servers }
        }
        msk => msk,
    }
}

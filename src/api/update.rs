//! `UpdateEventSourceMapping`.

use serde::Deserialize;

use super::{ApiError, FunctionResolver, load};
use crate::clock::now_epoch_seconds;
use crate::model::mapping::{
    EventSourceMapping, KafkaEventSourceConfig, ProvisionedPollerConfig, ScalingConfig, SourceAccessConfiguration,
};
use crate::model::store::MappingStore;

/// `UpdateEventSourceMapping`'s parameters; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct UpdateRequest {
    #[serde(rename = "UUID")]
    pub uuid: String,
    pub function_name: Option<String>,
    pub enabled: Option<bool>,
    pub batch_size: Option<u32>,
    pub maximum_batching_window_in_seconds: Option<u32>,
    pub parallelization_factor: Option<u32>,
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
    pub amazon_managed_kafka_event_source_config: Option<KafkaEventSourceConfig>,
    pub self_managed_kafka_event_source_config: Option<KafkaEventSourceConfig>,
}

/// `UpdateEventSourceMapping`.
///
/// # Errors
/// `ResourceNotFoundException`, `ResourceConflictException` (the mapping is being created or
/// deleted, or changed concurrently), `InvalidParameterValueException`.
pub async fn update<S: MappingStore, F: FunctionResolver>(
    store: &S,
    functions: &F,
    request: UpdateRequest,
) -> Result<EventSourceMapping, ApiError> {
    let mut mapping = load(store, &request.uuid).await?;
    let state = mapping.state.after_update(request.enabled)?;
    // Consumer groups belong to the mapping for life, as in AWS.
    for (name, new, old) in [
        (
            "AmazonManagedKafkaEventSourceConfig",
            &request.amazon_managed_kafka_event_source_config,
            &mapping.amazon_managed_kafka_event_source_config,
        ),
        (
            "SelfManagedKafkaEventSourceConfig",
            &request.self_managed_kafka_event_source_config,
            &mapping.self_managed_kafka_event_source_config,
        ),
    ] {
        if let Some(new) = new
            && new.consumer_group_id.is_some()
            && new.consumer_group_id != old.as_ref().and_then(|o| o.consumer_group_id.clone())
        {
            return Err(ApiError::invalid(format!("{name}.ConsumerGroupId cannot be updated.")));
        }
    }
    if let Some(name) = &request.function_name {
        mapping.function_arn = functions.resolve(name).await?;
    }
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(v) = request.$field.clone() { mapping.$field = Some(v); } )* };
    }
    set!(
        batch_size,
        maximum_batching_window_in_seconds,
        parallelization_factor,
        source_access_configurations,
        filter_criteria,
        destination_config,
        maximum_retry_attempts,
        maximum_record_age_in_seconds,
        bisect_batch_on_function_error,
        function_response_types,
        provisioned_poller_config,
        metrics_config,
        scaling_config
    );
    mapping.state = state;
    mapping.state_transition_reason = Some("USER_INITIATED".to_owned());
    mapping.last_modified = now_epoch_seconds();
    mapping.version += 1;
    mapping.validate()?;
    store.replace(&mapping).await.map_err(|e| ApiError::service(&e))?;
    Ok(mapping)
}

//! The EventSourceMapping API (`CreateEventSourceMapping`, `List…`, `Get…`, `Update…`,
//! `Delete…`) over the mapping store, with AWS's validation, state rules and error codes.
//!
//! The `esm` CLI is a thin shell over these functions; anything else that manages mappings
//! (tests, a custom resource) can call them directly.

use std::future::Future;

use aws_sdk_lambda::error::{DisplayErrorContext, ProvideErrorMetadata};
use serde::Deserialize;

use crate::mapping::{
    EventSourceMapping, KafkaEventSourceConfig, ProvisionedPollerConfig, SelfManagedEventSource,
    SourceAccessConfiguration, StartingPosition, State, now_epoch_seconds, validate_msk_arn,
};
use crate::store::{Loaded, MappingStore, StoreError};

/// An API error with the AWS error code the CLI prints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self { code: "InvalidParameterValueException", message: message.into() }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self { code: "ResourceNotFoundException", message: message.into() }
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self { code: "ResourceConflictException", message: message.into() }
    }

    fn service(e: &StoreError) -> Self {
        match e {
            StoreError::Conflict { uuid } => {
                Self::conflict(format!("The event source mapping {uuid} was modified concurrently. Retry the request."))
            }
            other => Self { code: "ServiceException", message: other.to_string() },
        }
    }
}

/// Turns `--function-name` (name, partial or full ARN, with or without qualifier) into the
/// function's ARN, checking that it exists.
pub trait FunctionResolver: Send + Sync {
    fn resolve(&self, function_name: &str) -> impl Future<Output = Result<String, ApiError>> + Send;
}

/// Resolves through `lambda:GetFunction`.
#[derive(Debug, Clone)]
pub struct LambdaFunctionResolver {
    client: aws_sdk_lambda::Client,
}

impl LambdaFunctionResolver {
    pub const fn new(client: aws_sdk_lambda::Client) -> Self {
        Self { client }
    }
}

impl FunctionResolver for LambdaFunctionResolver {
    async fn resolve(&self, function_name: &str) -> Result<String, ApiError> {
        match self.client.get_function().function_name(function_name).send().await {
            Ok(out) => {
                let arn = out
                    .configuration()
                    .and_then(|c| c.function_arn())
                    .ok_or_else(|| ApiError::invalid(format!("GetFunction returned no ARN for {function_name}")))?;
                // Keep a version or alias the user asked for.
                Ok(match qualifier(function_name) {
                    Some(q) if !arn.ends_with(&format!(":{q}")) => format!("{arn}:{q}"),
                    _ => arn.to_owned(),
                })
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => {
                Err(ApiError::not_found(format!("Function not found: {function_name}")))
            }
            // The Lambda API could not answer (an emulator without GetFunction, no permission,
            // unreachable): keep the name as given; the poller reports a missing function when
            // it first invokes it (FUNCTION_CONFIG_NOT_VALID).
            Err(e) => {
                tracing::warn!(
                    function = function_name,
                    code = e.as_service_error().and_then(ProvideErrorMetadata::code).unwrap_or("none"),
                    error = %DisplayErrorContext(&e),
                    "Cannot resolve the function through lambda:GetFunction; storing the name as given."
                );
                Ok(function_name.to_owned())
            }
        }
    }
}

fn qualifier(function_name: &str) -> Option<&str> {
    // arn:aws:lambda:REGION:ACCOUNT:function:NAME:QUALIFIER, or NAME:QUALIFIER
    let parts: Vec<&str> = function_name.split(':').collect();
    match parts.as_slice() {
        [_, q] => Some(q),
        ["arn", _, "lambda", _, _, "function", _, q] => Some(q),
        _ => None,
    }
}

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
        validate_msk_arn(arn).map_err(|e| ApiError::invalid(e.to_string()))?;
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
    let function_arn = functions.resolve(&request.function_name).await?;
    let uuid = uuid::Uuid::new_v4().to_string();
    let enabled = request.enabled.unwrap_or(true);
    let mut mapping = EventSourceMapping {
        uuid: uuid.clone(),
        starting_position: request.starting_position,
        starting_position_timestamp: request.starting_position_timestamp,
        batch_size: Some(request.batch_size.unwrap_or_else(crate::batch::default_batch_size)),
        maximum_batching_window_in_seconds: request.maximum_batching_window_in_seconds,
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
        provisioned_poller_config: request.provisioned_poller_config,
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
    mapping.validate().map_err(|e| ApiError::invalid(e.to_string()))?;
    validate_stored_settings(&mapping)?;
    ensure_group_unused(store, &mapping).await?;
    store.create(&mapping).await.map_err(|e| ApiError::service(&e))?;
    Ok(mapping)
}

/// The settings kafka-esm stores and echoes before it enforces them, held to AWS's ranges and
/// formats now, so no mapping holds a value AWS would have refused (and that would start meaning
/// something different once enforced). `EventSourceMapping::validate` covers the rest.
fn validate_stored_settings(mapping: &EventSourceMapping) -> Result<(), ApiError> {
    let invalid = |field: &str, message: String| Err(ApiError::invalid(format!("{field}: {message}")));
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
            "OnFailure.Destination '{destination}' is not an SQS queue, SNS topic or S3 bucket ARN, or kafka://TOPIC"
        ))
    }
}

fn destination_is_valid(destination: &str) -> bool {
    if let Some(topic) = destination.strip_prefix("kafka://") {
        return !topic.is_empty()
            && topic.len() <= 249
            && !topic.starts_with('.')
            && topic.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    }
    let parts: Vec<&str> = destination.splitn(6, ':').collect();
    let ["arn", partition, service, region, account, resource] = parts.as_slice() else {
        return false;
    };
    let regional = !region.is_empty() && account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    partition.starts_with("aws")
        && !resource.is_empty()
        && !resource.contains(['/', ':'])
        && match *service {
            "sqs" | "sns" => regional,
            // arn:aws:s3:::bucket
            "s3" => region.is_empty() && account.is_empty(),
            _ => false,
        }
}

/// `{"Filters": [{"Pattern": "<JSON object>"}, ...]}`, at most 5 filters (AWS's default quota).
fn validate_filter_criteria(criteria: &serde_json::Value) -> Result<(), String> {
    const MAX_FILTERS: usize = 5;
    let obj = criteria.as_object().ok_or("must be an object {\"Filters\": [{\"Pattern\": \"...\"}]}")?;
    if let Some(key) = obj.keys().find(|k| *k != "Filters") {
        return Err(format!("unknown field '{key}'; the only field is Filters"));
    }
    let Some(filters) = obj.get("Filters") else { return Ok(()) };
    let filters = filters.as_array().ok_or("Filters must be a list")?;
    if filters.len() > MAX_FILTERS {
        return Err(format!("{} filters; at most {MAX_FILTERS} are allowed", filters.len()));
    }
    for filter in filters {
        let pattern = filter
            .as_object()
            .filter(|f| f.keys().all(|k| k == "Pattern"))
            .and_then(|f| f.get("Pattern"))
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| format!("each filter must be {{\"Pattern\": \"...\"}}, not {filter}"))?;
        if pattern.len() > 4096 || !serde_json::from_str::<serde_json::Value>(pattern).is_ok_and(|p| p.is_object()) {
            return Err(format!("Pattern {pattern:?} is not a JSON object of at most 4096 characters"));
        }
    }
    Ok(())
}

/// Two mappings sharing a consumer group on one cluster would steal each other's offsets.
async fn ensure_group_unused<S: MappingStore>(store: &S, mapping: &EventSourceMapping) -> Result<(), ApiError> {
    let group = mapping.consumer_group_id();
    for other in store.list().await.map_err(|e| ApiError::service(&e))? {
        if let Loaded::Valid(other) | Loaded::Invalid { mapping: other, .. } = other
            && other.uuid != mapping.uuid
            && other.consumer_group_id() == group
            && other.cluster() == mapping.cluster()
        {
            return Err(ApiError::conflict(format!(
                "Consumer group {group} is already used by event source mapping {} on this cluster. Choose another ConsumerGroupId.",
                other.uuid
            )));
        }
    }
    Ok(())
}

async fn load<S: MappingStore>(store: &S, uuid: &str) -> Result<EventSourceMapping, ApiError> {
    match store.get(uuid).await.map_err(|e| ApiError::service(&e))? {
        Some(Loaded::Valid(m) | Loaded::Invalid { mapping: m, .. }) => Ok(m),
        Some(Loaded::Malformed { reason, .. }) => Err(ApiError {
            code: "ServiceException",
            message: format!(
                "The stored item for {uuid} is malformed ({reason}); fix or delete it with the DynamoDB API."
            ),
        }),
        None => Err(ApiError::not_found(format!(
            "The resource you requested does not exist. (Service: Lambda, Status Code: 404, Request ID: {uuid})"
        ))),
    }
}

/// `GetEventSourceMapping`.
///
/// # Errors
/// `ResourceNotFoundException`.
pub async fn get<S: MappingStore>(store: &S, uuid: &str) -> Result<EventSourceMapping, ApiError> {
    load(store, uuid).await
}

/// A page of `ListEventSourceMappings`.
#[derive(Debug, Clone, PartialEq)]
pub struct ListPage {
    pub mappings: Vec<EventSourceMapping>,
    /// Pass back as `--starting-token` for the next page.
    pub next_marker: Option<String>,
}

/// `ListEventSourceMappings`, filtered by function and/or event source, paged by UUID.
///
/// # Errors
/// The store could not be read.
pub async fn list<S: MappingStore>(
    store: &S,
    function_name: Option<&str>,
    event_source_arn: Option<&str>,
    marker: Option<&str>,
    max_items: Option<usize>,
) -> Result<ListPage, ApiError> {
    let mut mappings: Vec<EventSourceMapping> = store
        .list()
        .await
        .map_err(|e| ApiError::service(&e))?
        .into_iter()
        .filter_map(|l| match l {
            Loaded::Valid(m) | Loaded::Invalid { mapping: m, .. } => Some(m),
            Loaded::Malformed { .. } => None,
        })
        .filter(|m| function_name.is_none_or(|f| function_matches(&m.function_arn, f)))
        .filter(|m| event_source_arn.is_none_or(|a| m.event_source_arn.as_deref() == Some(a)))
        .filter(|m| marker.is_none_or(|after| m.uuid.as_str() > after))
        .collect();
    mappings.sort_by(|a, b| a.uuid.cmp(&b.uuid));
    let next_marker = match max_items {
        Some(max) if mappings.len() > max => {
            mappings.truncate(max);
            mappings.last().map(|m| m.uuid.clone())
        }
        _ => None,
    };
    Ok(ListPage { mappings, next_marker })
}

/// A function filter matches by full ARN, unqualified ARN, or name.
fn function_matches(function_arn: &str, filter: &str) -> bool {
    if function_arn == filter {
        return true;
    }
    let name = function_arn.split(':').nth(6).unwrap_or(function_arn);
    let filter_name = if filter.starts_with("arn:") {
        filter.split(':').nth(6).unwrap_or(filter)
    } else {
        filter.split(':').next().unwrap_or(filter)
    };
    name == filter_name
        && (filter.split(':').count() <= 2 || !filter.starts_with("arn:") || filter.split(':').count() == 7)
}

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
    pub source_access_configurations: Option<Vec<SourceAccessConfiguration>>,
    pub filter_criteria: Option<serde_json::Value>,
    pub destination_config: Option<serde_json::Value>,
    pub maximum_retry_attempts: Option<i32>,
    pub maximum_record_age_in_seconds: Option<i32>,
    pub bisect_batch_on_function_error: Option<bool>,
    pub function_response_types: Option<Vec<String>>,
    pub provisioned_poller_config: Option<ProvisionedPollerConfig>,
    pub metrics_config: Option<serde_json::Value>,
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
    match mapping.state {
        State::Creating | State::Deleting | State::Updating | State::Enabling | State::Disabling => {
            return Err(ApiError::conflict(format!(
                "The operation cannot be performed at this time. The event source mapping is currently in the {} state.",
                mapping.state.as_str()
            )));
        }
        State::Enabled | State::Disabled => {}
    }
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
        source_access_configurations,
        filter_criteria,
        destination_config,
        maximum_retry_attempts,
        maximum_record_age_in_seconds,
        bisect_batch_on_function_error,
        function_response_types,
        provisioned_poller_config,
        metrics_config
    );
    mapping.state = match (mapping.state, request.enabled) {
        (State::Disabled, Some(true)) => State::Enabling,
        (State::Enabled, Some(false)) => State::Disabling,
        (State::Enabled, _) => State::Updating,
        (state, _) => state,
    };
    mapping.state_transition_reason = Some("USER_INITIATED".to_owned());
    mapping.last_modified = now_epoch_seconds();
    mapping.version += 1;
    mapping.validate().map_err(|e| ApiError::invalid(e.to_string()))?;
    validate_stored_settings(&mapping)?;
    store.replace(&mapping).await.map_err(|e| ApiError::service(&e))?;
    Ok(mapping)
}

/// `DeleteEventSourceMapping`: marks the mapping `Deleting`; a poller stops its consumer,
/// releases its partitions and removes the item.
///
/// # Errors
/// `ResourceNotFoundException`, `ResourceConflictException` while it is being created or updated.
pub async fn delete<S: MappingStore>(store: &S, uuid: &str) -> Result<EventSourceMapping, ApiError> {
    let mut mapping = load(store, uuid).await?;
    if matches!(mapping.state, State::Creating | State::Updating | State::Enabling | State::Disabling | State::Deleting)
    {
        return Err(ApiError::conflict(format!(
            "The operation cannot be performed at this time. The event source mapping is currently in the {} state.",
            mapping.state.as_str()
        )));
    }
    mapping.state = State::Deleting;
    mapping.state_transition_reason = Some("USER_INITIATED".to_owned());
    mapping.last_modified = now_epoch_seconds();
    mapping.version += 1;
    store.replace(&mapping).await.map_err(|e| ApiError::service(&e))?;
    Ok(mapping)
}

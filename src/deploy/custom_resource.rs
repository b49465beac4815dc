//! The CloudFormation custom resource `Custom::KafkaEsmEventSource`: a mapping declared in a
//! template with the properties of `AWS::Lambda::EventSourceMapping`, created, updated and deleted
//! through the same [`crate::api`] functions as `esm`, so validation and errors are identical.
//!
//! CloudFormation sends a request ([`Request`]) and waits for a response `PUT` to the pre-signed
//! `ResponseURL` ([`send`]). [`handle`] decides the response; an API error becomes a `FAILED`
//! response whose reason is the AWS error code and message, as CloudFormation shows for
//! `AWS::Lambda::EventSourceMapping`.
//!
//! - The physical id is the mapping's `UUID`; `Ref` returns it, `Fn::GetAtt` gives `Id` and
//!   `EventSourceMappingArn` (as for `AWS::Lambda::EventSourceMapping`).
//! - An update of a property that `UpdateEventSourceMapping` cannot change ([`REPLACING`], the
//!   ones CloudFormation documents as "Update requires: Replacement") creates a new mapping and
//!   returns its UUID; CloudFormation then deletes the old one.
//! - Delete marks the mapping `Deleting` (a poller drains and removes it). A mapping that is
//!   already gone or being deleted counts as deleted, so rollbacks and retries succeed.
//! - CloudFormation passes every scalar property as a string; the numbers and booleans of the
//!   mapping are converted back before validation, and any other property is refused by name.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::api::{self, ApiError, CreateRequest, FunctionResolver, UpdateRequest};
use crate::model::mapping::EventSourceMapping;
use crate::model::store::MappingStore;

/// Properties whose change needs a new mapping (`UpdateEventSourceMapping` has no parameter for
/// them; CloudFormation replaces an `AWS::Lambda::EventSourceMapping` for each).
pub const REPLACING: [&str; 7] = [
    "EventSourceArn",
    "SelfManagedEventSource",
    "Topics",
    "StartingPosition",
    "StartingPositionTimestamp",
    "AmazonManagedKafkaEventSourceConfig",
    "SelfManagedKafkaEventSourceConfig",
];

/// Properties that are numbers in the API (CloudFormation sends them as strings).
const NUMBERS: [&str; 7] = [
    "BatchSize",
    "MaximumBatchingWindowInSeconds",
    "StartingPositionTimestamp",
    "MaximumRetryAttempts",
    "MaximumRecordAgeInSeconds",
    "MinimumPollers",
    "MaximumPollers",
];

/// Properties that are booleans in the API.
const BOOLEANS: [&str; 2] = ["Enabled", "BisectBatchOnFunctionError"];

/// CloudFormation's limit on a response body.
const MAX_RESPONSE_BYTES: usize = 4096;

/// How long the response `PUT` may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// `Create`, `Update` or `Delete`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestType {
    Create,
    Update,
    Delete,
}

/// A custom resource request, as CloudFormation sends it to the handler.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Request {
    pub request_type: RequestType,
    #[serde(rename = "ResponseURL")]
    pub response_url: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    #[serde(default)]
    pub resource_type: String,
    pub physical_resource_id: Option<String>,
    #[serde(default)]
    pub resource_properties: Map<String, Value>,
    pub old_resource_properties: Option<Map<String, Value>>,
}

/// `SUCCESS` or `FAILED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Success,
    Failed,
}

/// The response CloudFormation reads from the `ResponseURL`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub physical_resource_id: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub data: Map<String, Value>,
}

/// The response could not be delivered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    #[error("ResponseURL is not a valid URL: {0}")]
    Url(String),
    #[error("could not set up TLS: {0}")]
    Tls(String),
    #[error("PUT to the ResponseURL failed: {0}")]
    Http(String),
    #[error("PUT to the ResponseURL answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("PUT to the ResponseURL took more than {}s", SEND_TIMEOUT.as_secs())]
    Timeout,
}

/// Carries out one request and says what to answer. Never fails: every error is a `FAILED`
/// response naming it.
pub async fn handle<S: MappingStore, F: FunctionResolver>(store: &S, functions: &F, request: &Request) -> Response {
    let outcome = match request.request_type {
        RequestType::Create => create(store, functions, &request.resource_properties).await,
        RequestType::Update => update(store, functions, request).await,
        RequestType::Delete => delete(store, request).await,
    };
    match outcome {
        Ok((physical_resource_id, data)) => {
            tracing::info!(
                request = ?request.request_type,
                mapping = %physical_resource_id,
                logical_resource_id = %request.logical_resource_id,
                "Custom resource request succeeded."
            );
            respond(request, Status::Success, None, physical_resource_id, data)
        }
        Err(e) => {
            tracing::warn!(
                request = ?request.request_type,
                logical_resource_id = %request.logical_resource_id,
                error = %e,
                "Custom resource request failed."
            );
            // A failed create has no mapping: a fresh UUID that names none, so the delete that
            // CloudFormation sends on rollback finds nothing and succeeds.
            let physical_resource_id =
                request.physical_resource_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            respond(request, Status::Failed, Some(e.to_string()), physical_resource_id, Map::new())
        }
    }
}

/// A `FAILED` response for an event that is not a valid request but names a `ResponseURL`, so
/// CloudFormation hears of it instead of waiting for an hour.
pub fn malformed(event: &Value, problem: &str) -> Option<(String, Response)> {
    let field = |name: &str| event.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
    let url = event.get("ResponseURL")?.as_str()?.to_owned();
    let physical_resource_id = event
        .get("PhysicalResourceId")
        .and_then(Value::as_str)
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    Some((
        url,
        Response {
            status: Status::Failed,
            reason: Some(truncate(format!("The request is not a valid custom resource request: {problem}"))),
            physical_resource_id,
            stack_id: field("StackId"),
            request_id: field("RequestId"),
            logical_resource_id: field("LogicalResourceId"),
            data: Map::new(),
        },
    ))
}

fn respond(
    request: &Request,
    status: Status,
    reason: Option<String>,
    physical_resource_id: String,
    data: Map<String, Value>,
) -> Response {
    Response {
        status,
        reason: reason.map(truncate),
        physical_resource_id,
        stack_id: request.stack_id.clone(),
        request_id: request.request_id.clone(),
        logical_resource_id: request.logical_resource_id.clone(),
        data,
    }
}

/// Keeps the reason well inside CloudFormation's 4 KB response.
fn truncate(mut reason: String) -> String {
    let limit = MAX_RESPONSE_BYTES / 2;
    if reason.len() > limit {
        let mut end = limit;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push('…');
    }
    reason
}

async fn create<S: MappingStore, F: FunctionResolver>(
    store: &S,
    functions: &F,
    properties: &Map<String, Value>,
) -> Result<(String, Map<String, Value>), ApiError> {
    let request: CreateRequest = parse(properties)?;
    let mapping = api::create(store, functions, request).await?;
    Ok((mapping.uuid.clone(), attributes(&mapping)))
}

async fn update<S: MappingStore, F: FunctionResolver>(
    store: &S,
    functions: &F,
    request: &Request,
) -> Result<(String, Map<String, Value>), ApiError> {
    let new = &request.resource_properties;
    let old = request.old_resource_properties.clone().unwrap_or_default();
    let Some(uuid) = request.physical_resource_id.clone() else {
        return Err(ApiError::invalid("An update request carries no PhysicalResourceId."));
    };
    let replaced: Vec<&str> = REPLACING.into_iter().filter(|name| old.get(*name) != new.get(*name)).collect();
    if !replaced.is_empty() {
        tracing::info!(
            mapping = %uuid,
            properties = ?replaced,
            "Properties that UpdateEventSourceMapping cannot change were changed: creating a replacement mapping."
        );
        return create(store, functions, new).await;
    }
    let mut changes = without_service_token(new);
    changes.retain(|name, _| !REPLACING.contains(&name.as_str()));
    for name in old.keys().filter(|name| name.as_str() != "ServiceToken" && !new.contains_key(*name)) {
        match name.as_str() {
            // AWS's default.
            "Enabled" => {
                changes.insert("Enabled".to_owned(), Value::Bool(true));
            }
            _ => {
                return Err(ApiError::invalid(format!(
                    "Removing {name} from the resource is not supported: UpdateEventSourceMapping cannot unset it. \
                     Set it to the value you want instead."
                )));
            }
        }
    }
    changes.insert("UUID".to_owned(), Value::String(uuid));
    let update: UpdateRequest = parse(&changes)?;
    let mapping = api::update(store, functions, update).await?;
    Ok((mapping.uuid.clone(), attributes(&mapping)))
}

async fn delete<S: MappingStore>(store: &S, request: &Request) -> Result<(String, Map<String, Value>), ApiError> {
    let Some(uuid) = request.physical_resource_id.clone() else {
        return Err(ApiError::invalid("A delete request carries no PhysicalResourceId."));
    };
    match api::delete(store, &uuid).await {
        Ok(_) => Ok((uuid, Map::new())),
        // Already gone (a failed create, a delete retried, removed with esm): nothing to do.
        Err(ApiError { code: "ResourceNotFoundException", .. }) => Ok((uuid, Map::new())),
        // Already being deleted.
        Err(ApiError { code: "ResourceConflictException", .. }) if matches!(api::get(store, &uuid).await, Ok(api::Item::Mapping(m)) if m.state == crate::model::state::State::Deleting) => {
            Ok((uuid, Map::new()))
        }
        Err(e) => Err(e),
    }
}

/// `Fn::GetAtt` attributes, as `AWS::Lambda::EventSourceMapping` names them.
fn attributes(mapping: &EventSourceMapping) -> Map<String, Value> {
    let mut data = Map::new();
    data.insert("Id".to_owned(), Value::String(mapping.uuid.clone()));
    if let Some(arn) = &mapping.event_source_mapping_arn {
        data.insert("EventSourceMappingArn".to_owned(), Value::String(arn.clone()));
    }
    data
}

fn without_service_token(properties: &Map<String, Value>) -> Map<String, Value> {
    let mut properties = properties.clone();
    properties.remove("ServiceToken");
    properties
}

/// The properties as an API request, with CloudFormation's strings turned back into numbers and
/// booleans; an unknown or mistyped property is an `InvalidParameterValueException` naming it.
fn parse<T: serde::de::DeserializeOwned>(properties: &Map<String, Value>) -> Result<T, ApiError> {
    let mut value = Value::Object(without_service_token(properties));
    typed(&mut value)?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        ApiError::invalid(format!("Invalid property {path}: {}", e.into_inner()))
    })
}

fn typed(value: &mut Value) -> Result<(), ApiError> {
    match value {
        Value::Object(fields) => {
            for (name, field) in fields.iter_mut() {
                if let Value::String(text) = field {
                    if NUMBERS.contains(&name.as_str()) {
                        *field = number(text)
                            .ok_or_else(|| ApiError::invalid(format!("{name} must be a number, got {text:?}.")))?;
                        continue;
                    }
                    if BOOLEANS.contains(&name.as_str()) {
                        *field = match text.as_str() {
                            "true" => Value::Bool(true),
                            "false" => Value::Bool(false),
                            _ => return Err(ApiError::invalid(format!("{name} must be true or false, got {text:?}."))),
                        };
                        continue;
                    }
                }
                typed(field)?;
            }
        }
        Value::Array(items) => {
            for item in items {
                typed(item)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn number(text: &str) -> Option<Value> {
    if let Ok(n) = text.parse::<i64>() {
        return Some(json!(n));
    }
    text.parse::<f64>().ok().filter(|f| f.is_finite()).map(|f| json!(f))
}

/// Delivers the response to CloudFormation's pre-signed `ResponseURL` (`https`, or `http` for
/// local tests).
///
/// # Errors
/// When the URL is invalid or the `PUT` does not succeed within 30 s.
pub async fn send(url: &str, response: &Response) -> Result<(), SendError> {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let body = serde_json::to_vec(response).map_err(|e| SendError::Http(e.to_string()))?;
    let uri: hyper::Uri = url.parse().map_err(|e: hyper::http::uri::InvalidUri| SendError::Url(e.to_string()))?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| SendError::Tls(e.to_string()))?
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Full<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    // The URL is signed without a content type: send none (as AWS's cfn-response module does).
    let put = hyper::Request::put(uri)
        .header(hyper::header::CONTENT_TYPE, "")
        .header(hyper::header::CONTENT_LENGTH, body.len())
        .body(Full::new(bytes::Bytes::from(body)))
        .map_err(|e| SendError::Http(e.to_string()))?;
    let answer = tokio::time::timeout(SEND_TIMEOUT, async {
        let answer = client.request(put).await.map_err(|e| SendError::Http(e.to_string()))?;
        let status = answer.status();
        let body = answer.into_body().collect().await.map_err(|e| SendError::Http(e.to_string()))?.to_bytes();
        Ok::<_, SendError>((status, body))
    })
    .await
    .map_err(|_| SendError::Timeout)??;
    let (status, body) = answer;
    if status.is_success() {
        Ok(())
    } else {
        Err(SendError::Status { status: status.as_u16(), body: String::from_utf8_lossy(&body).into_owned() })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn cloudformation_strings_become_the_api_types() {
        let properties = json!({
            "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:provider",
            "FunctionName": "f",
            "Topics": ["t"],
            "BatchSize": "50",
            "Enabled": "false",
            "StartingPositionTimestamp": "1700000000.5",
            "ProvisionedPollerConfig": {"MinimumPollers": "1", "MaximumPollers": "3"},
        });
        let request: CreateRequest = parse(properties.as_object().unwrap()).unwrap();
        assert_eq!(request.batch_size, Some(50));
        assert_eq!(request.enabled, Some(false));
        assert_eq!(request.starting_position_timestamp, Some(1_700_000_000.5));
        assert_eq!(request.provisioned_poller_config.unwrap().maximum_pollers, Some(3));
    }

    #[test]
    fn unknown_and_mistyped_properties_are_refused_by_name() {
        let unknown = json!({"FunctionName": "f", "Tags": [{"Key": "k", "Value": "v"}]});
        let err = parse::<CreateRequest>(unknown.as_object().unwrap()).unwrap_err();
        assert_eq!(err.code, "InvalidParameterValueException");
        assert!(err.message.contains("Tags"), "{err}");
        let mistyped = json!({"FunctionName": "f", "BatchSize": "many"});
        let err = parse::<CreateRequest>(mistyped.as_object().unwrap()).unwrap_err();
        assert!(err.message.contains("BatchSize"), "{err}");
    }

    #[test]
    fn a_long_reason_is_cut_to_fit_the_response() {
        let reason = truncate("é".repeat(3000));
        assert!(reason.len() <= MAX_RESPONSE_BYTES / 2 + '…'.len_utf8());
    }
}

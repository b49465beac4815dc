//! `Custom::KafkaEsmEventSource` against a real mappings table (dynalite) and the Lambda stub's
//! GetFunction: CloudFormation's create, update (in place and by replacement) and delete, each
//! AWS error as a FAILED response, and the response PUT to a local HTTP server standing in for
//! the pre-signed S3 URL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use kafka_esm::aws::lambda::LambdaFunctionResolver;
use kafka_esm::aws::mappings::{DynamoMappingStore, ensure_tables};
use kafka_esm::config::Tables;
use kafka_esm::deploy::custom_resource::{self, Request, SendError};
use kafka_esm::model::state::State;
use kafka_esm::model::store::{Loaded, MappingStore};
use kafka_esm_testkit::{Dynalite, InvokeStub, sdk_config};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MSK_ARN: &str = "arn:aws:kafka:us-east-1:123456789012:cluster/orders/fc2f5bdf-fd1b-45ad-85dd-15b4a5a6247e-2";
const FUNCTION: &str = "orders-consumer";
const WAIT: Duration = Duration::from_secs(10);

static DYNALITE: OnceLock<Dynalite> = OnceLock::new();

fn dynalite() -> &'static Dynalite {
    DYNALITE.get_or_init(|| Dynalite::start().expect("start dynalite (scripts/install-deps.sh installs it)"))
}

/// A PUT the response server received.
#[derive(Debug, Clone)]
struct Put {
    method: String,
    content_type: Option<String>,
    body: Value,
}

/// Stands in for CloudFormation's pre-signed S3 response URL: records each request and answers
/// with `status`.
struct ResponseServer {
    url: String,
    puts: Arc<Mutex<Vec<Put>>>,
}

impl ResponseServer {
    async fn start(status: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/cloudformation-response?X-Amz-Signature=abc", listener.local_addr().unwrap());
        let puts = Arc::new(Mutex::new(Vec::new()));
        let recorded = puts.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    let mut chunk = [0_u8; 4096];
                    let (head, body_start) = loop {
                        let n = socket.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buffer.extend_from_slice(&chunk[..n]);
                        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                            break (String::from_utf8_lossy(&buffer[..end]).into_owned(), end + 4);
                        }
                    };
                    let header = |name: &str| {
                        head.lines().skip(1).find_map(|line| {
                            let (key, value) = line.split_once(':')?;
                            key.eq_ignore_ascii_case(name).then(|| value.trim().to_owned())
                        })
                    };
                    let length: usize = header("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
                    while buffer.len() < body_start + length {
                        let n = socket.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        buffer.extend_from_slice(&chunk[..n]);
                    }
                    let body = serde_json::from_slice(&buffer[body_start..]).unwrap_or(Value::Null);
                    let method = head.split(' ').next().unwrap_or_default().to_owned();
                    recorded.lock().unwrap().push(Put { method, content_type: header("content-type"), body });
                    let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                    let _ = socket.write_all(answer.as_bytes()).await;
                });
            }
        });
        Self { url, puts }
    }

    fn last(&self) -> Put {
        self.puts.lock().unwrap().last().cloned().expect("a response was PUT")
    }
}

/// One test's world: its own mappings table, a Lambda stub that knows one function, and the
/// response server.
struct World {
    store: DynamoMappingStore,
    functions: LambdaFunctionResolver,
    server: ResponseServer,
    _stub: InvokeStub,
}

impl World {
    async fn new() -> Self {
        let stub = InvokeStub::start().await;
        stub.set_known_functions(&[FUNCTION]);
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let tables = Tables { mappings: format!("cr-mappings-{suffix}"), leases: format!("cr-leases-{suffix}") };
        let dynamo = aws_sdk_dynamodb::Client::new(&sdk_config(&dynalite().endpoint).await);
        tokio::time::timeout(WAIT, ensure_tables(&dynamo, &tables)).await.expect("create tables in time").unwrap();
        Self {
            store: DynamoMappingStore::new(dynamo, &tables.mappings),
            functions: LambdaFunctionResolver::new(aws_sdk_lambda::Client::new(&sdk_config(&stub.endpoint).await)),
            server: ResponseServer::start(200).await,
            _stub: stub,
        }
    }

    /// Runs a request as the provider Lambda does (handle, then PUT the response) and returns
    /// what the response URL received.
    async fn run(&self, request_type: &str, physical: Option<&str>, properties: Value, old: Option<Value>) -> Value {
        let mut event = json!({
            "RequestType": request_type,
            "ResponseURL": self.server.url,
            "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/app/1",
            "RequestId": uuid::Uuid::new_v4().to_string(),
            "LogicalResourceId": "OrdersMapping",
            "ResourceType": "Custom::KafkaEsmEventSource",
            "ResourceProperties": properties,
        });
        if let Some(physical) = physical {
            event["PhysicalResourceId"] = json!(physical);
        }
        if let Some(old) = old {
            event["OldResourceProperties"] = old;
        }
        let request: Request = serde_json::from_value(event.clone()).unwrap();
        let response = tokio::time::timeout(WAIT, custom_resource::handle(&self.store, &self.functions, &request))
            .await
            .expect("handled in time");
        custom_resource::send(&request.response_url, &response).await.unwrap();
        let put = self.server.last();
        assert_eq!(put.method, "PUT");
        assert_eq!(put.content_type.as_deref(), Some(""), "the pre-signed URL is signed without a content type");
        assert_eq!(put.body["RequestId"], event["RequestId"]);
        assert_eq!(put.body["StackId"], event["StackId"]);
        assert_eq!(put.body["LogicalResourceId"], "OrdersMapping");
        put.body
    }

    async fn stored(&self, uuid: &str) -> Option<kafka_esm::model::mapping::EventSourceMapping> {
        match self.store.get(uuid).await.unwrap() {
            Some(Loaded::Valid(m)) => Some(m),
            Some(other) => panic!("stored item is not a valid mapping: {other:?}"),
            None => None,
        }
    }
}

/// Properties as CloudFormation sends them: every scalar a string.
fn properties(topic: &str) -> Value {
    json!({
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:kafka-esm-custom-resource",
        "FunctionName": FUNCTION,
        "EventSourceArn": MSK_ARN,
        "Topics": [topic],
        "StartingPosition": "TRIM_HORIZON",
        "BatchSize": "10",
        "MaximumBatchingWindowInSeconds": "1",
    })
}

fn success(response: &Value) -> String {
    assert_eq!(response["Status"], "SUCCESS", "{response}");
    response["PhysicalResourceId"].as_str().unwrap().to_owned()
}

fn failure(response: &Value) -> String {
    assert_eq!(response["Status"], "FAILED", "{response}");
    assert!(response["PhysicalResourceId"].as_str().is_some_and(|id| !id.is_empty()));
    response["Reason"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn create_stores_the_mapping_and_returns_its_uuid_and_arn() {
    let world = World::new().await;
    let response = world.run("Create", None, properties("orders"), None).await;
    let uuid = success(&response);
    uuid::Uuid::parse_str(&uuid).expect("the physical id is the mapping's UUID");
    assert_eq!(response["Data"]["Id"], uuid);
    assert_eq!(
        response["Data"]["EventSourceMappingArn"],
        format!("arn:aws:lambda:us-east-1:123456789012:event-source-mapping:{uuid}")
    );
    let mapping = world.stored(&uuid).await.expect("stored");
    assert_eq!(mapping.function_arn, "arn:aws:lambda:us-east-1:123456789012:function:orders-consumer");
    assert_eq!(mapping.topics, vec!["orders".to_owned()]);
    assert_eq!((mapping.batch_size, mapping.maximum_batching_window_in_seconds), (Some(10), Some(1)));
    assert_eq!(mapping.state, State::Creating);
}

#[tokio::test]
async fn update_changes_the_mapping_in_place() {
    let world = World::new().await;
    let uuid = success(&world.run("Create", None, properties("orders"), None).await);
    let mut new = properties("orders");
    new["BatchSize"] = json!("500");
    new["Enabled"] = json!("false");
    let response = world.run("Update", Some(&uuid), new, Some(properties("orders"))).await;
    assert_eq!(success(&response), uuid, "an in-place update keeps the physical id");
    let mapping = world.stored(&uuid).await.unwrap();
    assert_eq!(mapping.batch_size, Some(500));
    assert!(matches!(mapping.state, State::Disabled | State::Disabling), "{:?}", mapping.state);
    assert_eq!(mapping.version, 2);
}

#[tokio::test]
async fn update_of_a_topic_creates_a_replacement_and_the_old_one_is_deleted_after() {
    let world = World::new().await;
    let old = success(&world.run("Create", None, properties("orders"), None).await);
    let response = world.run("Update", Some(&old), properties("payments"), Some(properties("orders"))).await;
    let new = success(&response);
    assert_ne!(new, old, "a new physical id tells CloudFormation to delete the old mapping");
    assert_eq!(world.stored(&new).await.unwrap().topics, vec!["payments".to_owned()]);
    assert!(world.stored(&old).await.is_some(), "the old mapping lives until CloudFormation deletes it");
    success(&world.run("Delete", Some(&old), properties("orders"), None).await);
    assert!(world.stored(&old).await.is_none());
    assert!(world.stored(&new).await.is_some());
}

#[tokio::test]
async fn a_replacement_that_keeps_topic_and_function_conflicts_with_the_old_mapping() {
    // CloudFormation creates the replacement before deleting the old one; two mappings of one topic
    // to one function would deliver every record twice, so the create is refused (as AWS does).
    let world = World::new().await;
    let old = success(&world.run("Create", None, properties("orders"), None).await);
    let mut new = properties("orders");
    new["StartingPosition"] = json!("LATEST");
    let response = world.run("Update", Some(&old), new, Some(properties("orders"))).await;
    let reason = failure(&response);
    assert!(reason.starts_with("ResourceConflictException: ") && reason.contains(&old), "{reason}");
    assert_eq!(response["PhysicalResourceId"], old, "the failed update keeps the old mapping");
    assert_eq!(
        world.stored(&old).await.unwrap().starting_position,
        Some(kafka_esm::model::mapping::StartingPosition::TrimHorizon)
    );
}

#[tokio::test]
async fn delete_marks_a_running_mapping_deleting_and_repeats_succeed() {
    let world = World::new().await;
    let uuid = success(&world.run("Create", None, properties("orders"), None).await);
    // A poller has settled it.
    let mut mapping = world.stored(&uuid).await.unwrap();
    mapping.state = State::Enabled;
    mapping.version += 1;
    world.store.replace(&mapping).await.unwrap();

    assert_eq!(success(&world.run("Delete", Some(&uuid), properties("orders"), None).await), uuid);
    assert_eq!(world.stored(&uuid).await.unwrap().state, State::Deleting, "the poller drains and removes it");
    // CloudFormation retries a delete it did not hear back from.
    assert_eq!(success(&world.run("Delete", Some(&uuid), properties("orders"), None).await), uuid);
}

#[tokio::test]
async fn a_failed_create_rolls_back_cleanly() {
    let world = World::new().await;
    let mut bad = properties("orders");
    bad["BatchSize"] = json!("0");
    let response = world.run("Create", None, bad.clone(), None).await;
    let reason = failure(&response);
    assert!(reason.starts_with("InvalidParameterValueException: "), "{reason}");
    assert!(reason.contains("BatchSize"), "{reason}");
    let physical = response["PhysicalResourceId"].as_str().unwrap();
    assert!(world.stored(physical).await.is_none());
    // CloudFormation deletes the failed resource on rollback.
    success(&world.run("Delete", Some(physical), bad, None).await);
}

#[tokio::test]
async fn each_aws_error_is_a_failed_response_with_its_code_and_message() {
    let world = World::new().await;
    let created = success(&world.run("Create", None, properties("orders"), None).await);

    let mut missing_function = properties("other");
    missing_function["FunctionName"] = json!("no-such-function");
    let reason = failure(&world.run("Create", None, missing_function, None).await);
    assert!(reason.starts_with("ResourceNotFoundException: ") && reason.contains("no-such-function"), "{reason}");

    // The same topic to the same function on the same cluster again.
    let reason = failure(&world.run("Create", None, properties("orders"), None).await);
    assert!(reason.starts_with("ResourceConflictException: ") && reason.contains(&created), "{reason}");

    let mut bad_arn = properties("other");
    bad_arn["EventSourceArn"] = json!("arn:aws:kafka:us-east-1:123456789012:topic/nope");
    assert!(failure(&world.run("Create", None, bad_arn, None).await).starts_with("InvalidParameterValueException: "));

    let mut unknown = properties("other");
    unknown["Tags"] = json!([{"Key": "team", "Value": "orders"}]);
    let reason = failure(&world.run("Create", None, unknown, None).await);
    assert!(reason.starts_with("InvalidParameterValueException: ") && reason.contains("Tags"), "{reason}");

    let gone = uuid::Uuid::new_v4().to_string();
    let mut new = properties("orders");
    new["BatchSize"] = json!("20");
    let response = world.run("Update", Some(&gone), new.clone(), Some(properties("orders"))).await;
    assert!(failure(&response).starts_with("ResourceNotFoundException: "));
    assert_eq!(response["PhysicalResourceId"], gone, "a failed update keeps the physical id");

    // Deleting, then updated: the state rules of UpdateEventSourceMapping apply.
    let mut mapping = world.stored(&created).await.unwrap();
    mapping.state = State::Deleting;
    mapping.version += 1;
    world.store.replace(&mapping).await.unwrap();
    let reason = failure(&world.run("Update", Some(&created), new, Some(properties("orders"))).await);
    assert!(reason.starts_with("ResourceConflictException: "), "{reason}");

    // A property that cannot be unset.
    let mut without = properties("orders");
    without.as_object_mut().unwrap().remove("MaximumBatchingWindowInSeconds");
    let fresh = success(&world.run("Create", None, properties("third"), None).await);
    let mut third = without.clone();
    third["Topics"] = json!(["third"]);
    let reason = failure(&world.run("Update", Some(&fresh), third, Some(properties("third"))).await);
    assert!(reason.contains("MaximumBatchingWindowInSeconds"), "{reason}");
}

#[tokio::test]
async fn a_request_without_the_fields_cloudformation_sends_is_answered_failed() {
    let world = World::new().await;
    let event = json!({"RequestType": "Create", "ResponseURL": world.server.url, "RequestId": "r", "StackId": "s"});
    let problem = serde_json::from_value::<Request>(event.clone()).unwrap_err().to_string();
    let (url, response) = custom_resource::malformed(&event, &problem).expect("it names a ResponseURL");
    custom_resource::send(&url, &response).await.unwrap();
    let put = world.server.last();
    assert_eq!(put.body["Status"], "FAILED");
    assert!(put.body["Reason"].as_str().unwrap().contains("LogicalResourceId"), "{}", put.body);
    assert!(custom_resource::malformed(&json!({"RequestType": "Create"}), "x").is_none());
}

#[tokio::test]
async fn a_response_url_that_refuses_the_put_is_an_error() {
    let server = ResponseServer::start(403).await;
    let response = custom_resource::malformed(&json!({"ResponseURL": server.url}), "x").unwrap().1;
    let err = custom_resource::send(&server.url, &response).await.unwrap_err();
    assert!(matches!(err, SendError::Status { status: 403, .. }), "{err}");
}

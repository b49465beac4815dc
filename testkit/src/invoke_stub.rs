//! An in-repo Lambda Invoke endpoint (plus `GetFunction`), following the real API's documented
//! behaviour: a function error is HTTP 200 with `X-Amz-Function-Error: Unhandled`; a missing
//! function is 404 `ResourceNotFoundException`; throttling is 429 `TooManyRequestsException`.
//! Each invocation is recorded with its start and end time, so tests can check ordering,
//! exclusivity and retries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tokio::time::Instant;

/// What a function does when invoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StubBehaviour {
    Succeed,
    /// Fails (200 + `X-Amz-Function-Error`) when any record value contains the marker.
    FailOnValue(String),
    /// Fails every invocation.
    FunctionError,
    /// 429 TooManyRequestsException for the next `n` invocations, then succeeds.
    Throttle(usize),
    /// 500 without `X-Amz-Function-Error`, as `cargo lambda watch` reports function errors.
    EmulatorError,
}

/// One recorded invocation.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub function: String,
    /// The request body exactly as received.
    pub raw: String,
    pub event: Value,
    pub started: Instant,
    pub finished: Instant,
    pub succeeded: bool,
}

impl Invocation {
    /// `(partition key, offsets)` of every partition in the event.
    pub fn offsets(&self) -> Vec<(String, Vec<i64>)> {
        self.event["records"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_array()
                                .map(|a| a.iter().filter_map(|r| r["offset"].as_i64()).collect())
                                .unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[derive(Debug, Default)]
struct StubState {
    invocations: Mutex<Vec<Invocation>>,
    behaviours: Mutex<HashMap<String, StubBehaviour>>,
    /// Only these exist (GetFunction and Invoke 404 for others); empty means every name exists.
    known: Mutex<Vec<String>>,
    delay: Mutex<Duration>,
    record: bool,
    count: Mutex<u64>,
    records: Mutex<u64>,
}

/// A running stub; cheap to clone.
#[derive(Debug, Clone)]
pub struct InvokeStub {
    state: Arc<StubState>,
    pub endpoint: String,
}

/// The function name inside a name or (partial) ARN.
pub fn function_name(raw: &str) -> String {
    match raw.split(':').collect::<Vec<_>>().as_slice() {
        ["arn", _, "lambda", _, _, "function", name, ..] => (*name).to_owned(),
        [name, ..] => (*name).to_owned(),
        [] => String::new(),
    }
}

/// The ARN the stub reports for a function.
pub fn function_arn(name: &str) -> String {
    format!("arn:aws:lambda:us-east-1:123456789012:function:{name}")
}

impl InvokeStub {
    /// Starts on a free port, recording every invocation.
    pub async fn start() -> Self {
        Self::start_on(0, true).await
    }

    /// Starts on `port` (0: any). With `record` off it only counts (for benchmarks).
    pub async fn start_on(port: u16, record: bool) -> Self {
        let state = Arc::new(StubState { record, ..StubState::default() });
        let app = Router::new()
            .route("/2015-03-31/functions/{name}/invocations", post(invoke))
            .route("/2015-03-31/functions/{name}", get(get_function))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind the invoke stub");
        let addr = listener.local_addr().expect("stub address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { state, endpoint: format!("http://{addr}") }
    }

    pub fn set_behaviour(&self, function: &str, behaviour: StubBehaviour) {
        self.state.behaviours.lock().expect("lock").insert(function.to_owned(), behaviour);
    }

    /// Restricts which functions exist.
    pub fn set_known_functions(&self, names: &[&str]) {
        *self.state.known.lock().expect("lock") = names.iter().map(|s| (*s).to_owned()).collect();
    }

    /// How long each invocation takes.
    pub fn set_delay(&self, delay: Duration) {
        *self.state.delay.lock().expect("lock") = delay;
    }

    pub fn invocations(&self) -> Vec<Invocation> {
        self.state.invocations.lock().expect("lock").clone()
    }

    /// `(requests, records)` received so far: every Invoke request (refused ones too), and the
    /// records of successful invocations.
    pub fn counts(&self) -> (u64, u64) {
        (*self.state.count.lock().expect("lock"), *self.state.records.lock().expect("lock"))
    }
}

fn exists(state: &StubState, name: &str) -> bool {
    let known = state.known.lock().expect("lock");
    known.is_empty() || known.iter().any(|k| k == name)
}

fn aws_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        [("x-amzn-errortype", kind), ("content-type", "application/json")],
        json!({"Type": "User", "message": message}).to_string(),
    )
        .into_response()
}

async fn get_function(State(state): State<Arc<StubState>>, Path(raw): Path<String>) -> Response {
    let name = function_name(&raw);
    if !exists(&state, &name) {
        return aws_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!("Function not found: {}", function_arn(&name)),
        );
    }
    let body = json!({"Configuration": {"FunctionName": name, "FunctionArn": function_arn(&name), "Runtime": "provided.al2023"}});
    (StatusCode::OK, [("content-type", "application/json")], body.to_string()).into_response()
}

async fn invoke(
    State(state): State<Arc<StubState>>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let name = function_name(&raw);
    *state.count.lock().expect("lock") += 1;
    if !exists(&state, &name) {
        return aws_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!("Function not found: {}", function_arn(&name)),
        );
    }
    if headers.get("x-amz-invocation-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v != "RequestResponse") {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            "stub only serves RequestResponse",
        );
    }
    let delay = *state.delay.lock().expect("lock");
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let behaviour = state.behaviours.lock().expect("lock").get(&name).cloned().unwrap_or(StubBehaviour::Succeed);
    if let StubBehaviour::Throttle(n) = behaviour
        && n > 0
    {
        state.behaviours.lock().expect("lock").insert(name.clone(), StubBehaviour::Throttle(n - 1));
        return aws_error(StatusCode::TOO_MANY_REQUESTS, "TooManyRequestsException", "Rate Exceeded.");
    }
    let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let record_count: u64 =
        event["records"].as_object().map_or(0, |m| m.values().map(|v| v.as_array().map_or(0, Vec::len) as u64).sum());
    let failed = match &behaviour {
        StubBehaviour::FunctionError | StubBehaviour::EmulatorError => true,
        StubBehaviour::FailOnValue(marker) => event["records"].as_object().is_some_and(|m| {
            m.values().flat_map(|v| v.as_array().cloned().unwrap_or_default()).any(|r| {
                r["value"]
                    .as_str()
                    .and_then(|v| STANDARD.decode(v).ok())
                    .is_some_and(|v| String::from_utf8_lossy(&v).contains(marker.as_str()))
            })
        }),
        StubBehaviour::Succeed | StubBehaviour::Throttle(_) => false,
    };
    if !failed {
        *state.records.lock().expect("lock") += record_count;
    }
    if state.record {
        state.invocations.lock().expect("lock").push(Invocation {
            function: name,
            raw: String::from_utf8_lossy(&body).into_owned(),
            event,
            started,
            finished: Instant::now(),
            succeeded: !failed,
        });
    }
    if !failed {
        return (StatusCode::OK, json!({"records": record_count}).to_string()).into_response();
    }
    let error = json!({"errorType": "Error", "errorMessage": "stub function failed"}).to_string();
    if behaviour == StubBehaviour::EmulatorError {
        return (StatusCode::INTERNAL_SERVER_ERROR, error).into_response();
    }
    (StatusCode::OK, [("x-amz-function-error", "Unhandled"), ("x-amz-executed-version", "$LATEST")], error)
        .into_response()
}

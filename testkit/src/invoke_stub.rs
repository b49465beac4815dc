//! An in-repo Lambda Invoke endpoint (plus `GetFunction`), following the real API's documented
//! behaviour: a function error is HTTP 200 with `X-Amz-Function-Error: Unhandled`; a missing
//! function is 404 `ResourceNotFoundException`; throttling is 429 `TooManyRequestsException`.
//!
//! Tests script it with [`Rule`]s (per function, per partition, per record, per value marker):
//! answer with a given body (a partial batch response), a function error, an Invoke API error, or
//! slowly, a given number of times or always. Each invocation is recorded with its payload, its
//! start and end time and its outcome, and the stub tracks how many invocations of each partition
//! (`topic-partition`, the payload's `records` keys) run at once, so tests can assert "never two
//! invocations of one partition at once".
//!
//! A function keeps running when its caller gives up (as in Lambda): an invocation whose HTTP
//! request was abandoned still counts as in flight until its delay is over.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
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

/// What a function does when invoked (the simple per-function settings; [`Rule`]s say more).
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

/// The answer to one Invoke request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// HTTP 200 with this body (the function's return value, JSON).
    Success(String),
    /// HTTP 200, `X-Amz-Function-Error: Unhandled`, this body.
    FunctionError(String),
    /// An Invoke API error: the function did not run.
    ApiError { status: u16, kind: String, message: String },
    /// HTTP 500 without `X-Amz-Function-Error`: how `cargo lambda watch` reports a function error.
    EmulatorError(String),
}

impl Default for Reply {
    fn default() -> Self {
        Self::success()
    }
}

impl Reply {
    /// 200 `null`: what a function that returns nothing answers.
    pub fn success() -> Self {
        Self::Success("null".to_owned())
    }

    /// 200 with `body`.
    pub fn body(body: impl Into<String>) -> Self {
        Self::Success(body.into())
    }

    /// 200 with a partial batch response: `(partition key "topic-partition", offset)` items.
    pub fn batch_item_failures(items: &[(&str, i64)]) -> Self {
        let failures: Vec<Value> = items
            .iter()
            .map(|(partition, offset)| json!({"itemIdentifier": {"partition": partition, "offset": offset}}))
            .collect();
        Self::Success(json!({ "batchItemFailures": failures }).to_string())
    }

    /// An unhandled function error with `message`, in Lambda's error body shape.
    pub fn function_error(message: &str) -> Self {
        Self::FunctionError(json!({"errorType": "Error", "errorMessage": message}).to_string())
    }

    /// The Invoke API error Lambda answers with `status` (429, 404, 403, 413, 400, 500, 502…).
    pub fn api_error(status: u16) -> Self {
        let (kind, message) = match status {
            400 => ("InvalidRequestContentException", "Could not parse request body into json"),
            403 => ("AccessDeniedException", "User is not authorized to perform: lambda:InvokeFunction"),
            404 => ("ResourceNotFoundException", "Function not found"),
            413 => (
                "RequestEntityTooLargeException",
                "Request must be smaller than 6291456 bytes for the InvokeFunction operation",
            ),
            429 => ("TooManyRequestsException", "Rate Exceeded."),
            s if s >= 500 => ("ServiceException", "An internal error occurred"),
            _ => ("InvalidParameterValueException", "Invalid request"),
        };
        Self::ApiError { status, kind: kind.to_owned(), message: message.to_owned() }
    }

    /// 500 without `X-Amz-Function-Error`.
    pub fn emulator_error() -> Self {
        Self::EmulatorError(json!({"errorType": "Error", "errorMessage": "stub function failed"}).to_string())
    }

    fn outcome(&self) -> Outcome {
        match self {
            Self::Success(_) => Outcome::Success,
            Self::FunctionError(_) | Self::EmulatorError(_) => Outcome::FunctionError,
            Self::ApiError { status, .. } => Outcome::ApiError(*status),
        }
    }
}

/// When a rule applies, and what it answers. Every condition set must hold; the first rule that
/// matches (and has uses left) decides, in the order rules were added.
#[derive(Debug, Clone, Default)]
pub struct Rule {
    function: Option<String>,
    partition: Option<String>,
    record: Option<(String, i64)>,
    value_contains: Option<String>,
    reply: Reply,
    delay: Duration,
    times: Option<usize>,
}

impl Rule {
    /// Every invocation answers `reply` (narrow it with the builder methods).
    pub fn reply(reply: Reply) -> Self {
        Self { reply, ..Self::default() }
    }

    /// Only invocations of `function` (a name, as in the request path or ARN).
    pub fn function(mut self, function: &str) -> Self {
        self.function = Some(function_name(function));
        self
    }

    /// Only payloads holding records of `partition` (`"topic-partition"`).
    pub fn partition(mut self, partition: &str) -> Self {
        self.partition = Some(partition.to_owned());
        self
    }

    /// Only payloads holding the record at `offset` of `partition` (`"topic-partition"`).
    pub fn record(mut self, partition: &str, offset: i64) -> Self {
        self.record = Some((partition.to_owned(), offset));
        self
    }

    /// Only payloads with a record whose value contains `marker`.
    pub fn value_contains(mut self, marker: &str) -> Self {
        self.value_contains = Some(marker.to_owned());
        self
    }

    /// Answer after `delay` (a slow function; for an API error, a slow API).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Apply to the next `n` matching invocations only.
    pub fn times(mut self, n: usize) -> Self {
        self.times = Some(n);
        self
    }

    fn matches(&self, function: &str, event: &Value) -> bool {
        if self.times == Some(0) {
            return false;
        }
        if self.function.as_deref().is_some_and(|f| f != function) {
            return false;
        }
        let records = event["records"].as_object();
        if let Some(partition) = &self.partition
            && !records.is_some_and(|m| m.contains_key(partition))
        {
            return false;
        }
        if let Some((partition, offset)) = &self.record
            && !records
                .and_then(|m| m.get(partition))
                .and_then(Value::as_array)
                .is_some_and(|list| list.iter().any(|r| r["offset"].as_i64() == Some(*offset)))
        {
            return false;
        }
        if let Some(marker) = &self.value_contains
            && !any_value_contains(event, marker)
        {
            return false;
        }
        true
    }
}

/// How an invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The function ran and failed (`X-Amz-Function-Error`, or the emulator's 500).
    FunctionError,
    /// The Invoke API refused the request with this status; the function did not run.
    ApiError(u16),
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
    /// The function ran and succeeded.
    pub succeeded: bool,
    pub outcome: Outcome,
    /// The body the stub answered with.
    pub response: String,
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

    /// Records in the event.
    pub fn record_count(&self) -> usize {
        record_count(&self.event)
    }
}

#[derive(Debug, Default)]
struct StubState {
    /// Requests that reached a function (API errors excluded), and all requests.
    invocations: Mutex<Vec<Invocation>>,
    requests: Mutex<Vec<Invocation>>,
    behaviours: Mutex<HashMap<String, StubBehaviour>>,
    rules: Mutex<Vec<Rule>>,
    /// Only these exist (GetFunction and Invoke 404 for others); empty means every name exists.
    known: Mutex<Vec<String>>,
    delay: Mutex<Duration>,
    /// The `Timeout` GetFunction reports (`None`: Lambda's longest, 900 s, which no rule's
    /// delay here exceeds).
    timeout: Mutex<Option<u64>>,
    record: bool,
    counts: Mutex<Counts>,
    in_flight: Mutex<InFlight>,
}

#[derive(Debug, Clone, Copy)]
struct Counts {
    since: std::time::SystemTime,
    requests: u64,
    records: u64,
}

impl Default for Counts {
    fn default() -> Self {
        Self { since: std::time::SystemTime::now(), requests: 0, records: 0 }
    }
}

#[derive(Debug, Default)]
struct InFlight {
    now: BTreeMap<String, usize>,
    max: BTreeMap<String, usize>,
}

/// Poisoning only means another test thread panicked; the data is still what it was.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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
    ///
    /// Besides the Lambda API it serves `GET /__stub/counts` (`{"invocations","records",
    /// "elapsed_s"}` since the last reset) and `POST /__stub/reset`, for scripts.
    pub async fn start_on(port: u16, record: bool) -> Self {
        let state = Arc::new(StubState { record, ..StubState::default() });
        let app = Router::new()
            .route("/2015-03-31/functions/{name}/invocations", post(invoke))
            .route("/2015-03-31/functions/{name}", get(get_function))
            .route("/__stub/counts", get(counts_json))
            .route("/__stub/reset", post(reset_json))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind the invoke stub");
        let addr = listener.local_addr().expect("stub address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { state, endpoint: format!("http://{addr}") }
    }

    pub fn set_behaviour(&self, function: &str, behaviour: StubBehaviour) {
        lock(&self.state.behaviours).insert(function.to_owned(), behaviour);
    }

    /// Adds a rule after the existing ones (rules are consulted before the behaviours).
    pub fn add_rule(&self, rule: Rule) {
        lock(&self.state.rules).push(rule);
    }

    /// Removes every rule.
    pub fn clear_rules(&self) {
        lock(&self.state.rules).clear();
    }

    /// Restricts which functions exist.
    pub fn set_known_functions(&self, names: &[&str]) {
        *lock(&self.state.known) = names.iter().map(|s| (*s).to_owned()).collect();
    }

    /// How long each invocation takes (on top of a rule's delay).
    pub fn set_delay(&self, delay: Duration) {
        *lock(&self.state.delay) = delay;
    }

    /// GetFunction reports `seconds` as every function's timeout.
    pub fn set_timeout(&self, seconds: u64) {
        *lock(&self.state.timeout) = Some(seconds);
    }

    /// Invocations that reached a function (not those refused with an API error), in the order
    /// they finished.
    pub fn invocations(&self) -> Vec<Invocation> {
        lock(&self.state.invocations).clone()
    }

    /// Every Invoke request, API errors included, in the order they were answered.
    pub fn requests(&self) -> Vec<Invocation> {
        lock(&self.state.requests).clone()
    }

    /// Invocations of `function` that reached it.
    pub fn invocation_count(&self, function: &str) -> usize {
        let name = function_name(function);
        lock(&self.state.invocations).iter().filter(|i| i.function == name).count()
    }

    /// `(requests, records)` received so far: every Invoke request (refused ones too), and the
    /// records of successful invocations.
    pub fn counts(&self) -> (u64, u64) {
        let counts = *lock(&self.state.counts);
        (counts.requests, counts.records)
    }

    /// Starts the counts of [`InvokeStub::counts`] again from zero.
    pub fn reset_counts(&self) {
        *lock(&self.state.counts) = Counts::default();
    }

    /// The most invocations of each partition that ran at the same time (1 everywhere when the
    /// poller never overlaps a partition's batches).
    pub fn max_in_flight_per_partition(&self) -> BTreeMap<String, usize> {
        lock(&self.state.in_flight).max.clone()
    }

    /// The highest of [`InvokeStub::max_in_flight_per_partition`] (0 before any invocation).
    pub fn max_in_flight_of_one_partition(&self) -> usize {
        lock(&self.state.in_flight).max.values().copied().max().unwrap_or(0)
    }

    /// Invocations running right now, per partition.
    pub fn in_flight(&self) -> BTreeMap<String, usize> {
        lock(&self.state.in_flight).now.iter().filter(|(_, n)| **n > 0).map(|(k, n)| (k.clone(), *n)).collect()
    }
}

fn exists(state: &StubState, name: &str) -> bool {
    let known = lock(&state.known);
    known.is_empty() || known.iter().any(|k| k == name)
}

fn aws_error(status: StatusCode, kind: &str, message: &str) -> Response {
    let origin = if status.is_server_error() { "Service" } else { "User" };
    (
        status,
        [("x-amzn-errortype", kind), ("content-type", "application/json")],
        json!({"Type": origin, "message": message}).to_string(),
    )
        .into_response()
}

async fn counts_json(State(state): State<Arc<StubState>>) -> Response {
    let counts = *lock(&state.counts);
    let since = counts.since.duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    let elapsed = counts.since.elapsed().map_or(0.0, |d| d.as_secs_f64());
    let body = json!({"since": since, "invocations": counts.requests, "records": counts.records, "elapsed_s": elapsed});
    (StatusCode::OK, [("content-type", "application/json")], body.to_string()).into_response()
}

async fn reset_json(state: State<Arc<StubState>>) -> Response {
    *lock(&state.counts) = Counts::default();
    counts_json(state).await
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
    let timeout = lock(&state.timeout).unwrap_or(900);
    let body = json!({"Configuration": {"FunctionName": name, "FunctionArn": function_arn(&name), "Runtime": "provided.al2023", "Timeout": timeout}});
    (StatusCode::OK, [("content-type", "application/json")], body.to_string()).into_response()
}

fn record_count(event: &Value) -> usize {
    event["records"].as_object().map_or(0, |m| m.values().map(|v| v.as_array().map_or(0, Vec::len)).sum())
}

fn any_value_contains(event: &Value, marker: &str) -> bool {
    event["records"].as_object().is_some_and(|m| {
        m.values().filter_map(Value::as_array).flatten().any(|r| {
            r["value"]
                .as_str()
                .and_then(|v| STANDARD.decode(v).ok())
                .is_some_and(|v| String::from_utf8_lossy(&v).contains(marker))
        })
    })
}

/// The reply and extra delay for an invocation: the first matching rule (using one of its
/// uses), else the function's behaviour.
fn decide(state: &StubState, name: &str, event: &Value) -> (Reply, Duration) {
    {
        let mut rules = lock(&state.rules);
        if let Some(rule) = rules.iter_mut().find(|r| r.matches(name, event)) {
            if let Some(n) = rule.times.as_mut() {
                *n -= 1;
            }
            return (rule.reply.clone(), rule.delay);
        }
    }
    let mut behaviours = lock(&state.behaviours);
    let behaviour = behaviours.get(name).cloned().unwrap_or(StubBehaviour::Succeed);
    let reply = match behaviour {
        StubBehaviour::Succeed | StubBehaviour::Throttle(0) => Reply::success(),
        StubBehaviour::Throttle(n) => {
            behaviours.insert(name.to_owned(), StubBehaviour::Throttle(n - 1));
            Reply::api_error(429)
        }
        StubBehaviour::FunctionError => Reply::function_error("stub function failed"),
        StubBehaviour::EmulatorError => Reply::emulator_error(),
        StubBehaviour::FailOnValue(marker) => {
            if any_value_contains(event, &marker) {
                Reply::function_error("stub function failed")
            } else {
                Reply::success()
            }
        }
    };
    (reply, Duration::ZERO)
}

/// Counts a partition's invocation as running until dropped.
struct Running {
    state: Arc<StubState>,
    partitions: Vec<String>,
}

impl Running {
    fn start(state: &Arc<StubState>, event: &Value) -> Self {
        let partitions: Vec<String> =
            event["records"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
        let mut in_flight = lock(&state.in_flight);
        for p in &partitions {
            let now = in_flight.now.entry(p.clone()).or_default();
            *now += 1;
            let now = *now;
            let max = in_flight.max.entry(p.clone()).or_default();
            *max = (*max).max(now);
        }
        Self { state: state.clone(), partitions }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut in_flight = lock(&self.state.in_flight);
        for p in &self.partitions {
            if let Some(n) = in_flight.now.get_mut(p) {
                *n = n.saturating_sub(1);
            }
        }
    }
}

async fn invoke(
    State(state): State<Arc<StubState>>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let name = function_name(&raw);
    lock(&state.counts).requests += 1;
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
    // The function runs in a task of its own: a caller that gives up does not stop it (nor
    // its in-flight count), as in Lambda.
    let task = tokio::spawn(run_function(state, name, body, started));
    match task.await {
        Ok(response) => response,
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("stub task failed: {e}")).into_response(),
    }
}

async fn run_function(state: Arc<StubState>, name: String, body: Bytes, started: Instant) -> Response {
    let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (reply, rule_delay) = decide(&state, &name, &event);
    let running = (!matches!(reply, Reply::ApiError { .. })).then(|| Running::start(&state, &event));
    let delay = *lock(&state.delay) + rule_delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    drop(running);
    let outcome = reply.outcome();
    if outcome == Outcome::Success {
        lock(&state.counts).records += record_count(&event) as u64;
    }
    let response_body = match &reply {
        Reply::Success(b) | Reply::FunctionError(b) | Reply::EmulatorError(b) => b.clone(),
        Reply::ApiError { message, .. } => message.clone(),
    };
    if state.record {
        let invocation = Invocation {
            function: name,
            raw: String::from_utf8_lossy(&body).into_owned(),
            event,
            started,
            finished: Instant::now(),
            succeeded: outcome == Outcome::Success,
            outcome,
            response: response_body,
        };
        if !matches!(outcome, Outcome::ApiError(_)) {
            lock(&state.invocations).push(invocation.clone());
        }
        lock(&state.requests).push(invocation);
    }
    match reply {
        Reply::Success(body) => {
            (StatusCode::OK, [("content-type", "application/json"), ("x-amz-executed-version", "$LATEST")], body)
                .into_response()
        }
        Reply::FunctionError(body) => (
            StatusCode::OK,
            [
                ("content-type", "application/json"),
                ("x-amz-function-error", "Unhandled"),
                ("x-amz-executed-version", "$LATEST"),
            ],
            body,
        )
            .into_response(),
        Reply::EmulatorError(body) => (StatusCode::INTERNAL_SERVER_ERROR, body).into_response(),
        Reply::ApiError { status, kind, message } => {
            aws_error(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), &kind, &message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(records: &[(&str, &[i64], &str)]) -> String {
        let mut map = serde_json::Map::new();
        for (partition, offsets, value) in records {
            let list: Vec<Value> =
                offsets.iter().map(|o| json!({"offset": o, "value": STANDARD.encode(value)})).collect();
            map.insert((*partition).to_owned(), Value::Array(list));
        }
        json!({"eventSource": "SelfManagedKafka", "records": map}).to_string()
    }

    async fn call(stub: &InvokeStub, function: &str, body: String) -> (u16, HeaderMap, String) {
        let url = format!("{}/2015-03-31/functions/{function}/invocations", stub.endpoint);
        let response = post_json(&url, body).await;
        (response.0, response.1, response.2)
    }

    /// A bare HTTP/1.1 POST (the stub is tested at the HTTP level, as the SDK sees it).
    async fn post_json(url: &str, body: String) -> (u16, HeaderMap, String) {
        use http_body_util::BodyExt;
        let uri: hyper::Uri = url.parse().unwrap();
        let stream = tokio::net::TcpStream::connect((uri.host().unwrap(), uri.port_u16().unwrap())).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        let request = hyper::Request::post(uri.path())
            .header("host", "stub")
            .body(http_body_util::Full::new(Bytes::from(body)))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, headers, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn rules_answer_by_function_record_and_count() {
        let stub = InvokeStub::start().await;
        stub.add_rule(Rule::reply(Reply::batch_item_failures(&[("t-0", 40)])).function("f").record("t-0", 40).times(1));
        stub.add_rule(Rule::reply(Reply::api_error(413)).function("big"));
        stub.add_rule(Rule::reply(Reply::function_error("poison")).value_contains("poison"));

        let (status, _, body) = call(&stub, "f", event(&[("t-0", &[39, 40], "a")])).await;
        assert_eq!(status, 200);
        assert_eq!(body, r#"{"batchItemFailures":[{"itemIdentifier":{"partition":"t-0","offset":40}}]}"#);
        // Used up: the same batch now succeeds with `null`.
        let (status, headers, body) = call(&stub, "f", event(&[("t-0", &[39, 40], "a")])).await;
        assert_eq!((status, body.as_str()), (200, "null"));
        assert!(headers.get("x-amz-function-error").is_none());

        let (status, headers, _) = call(&stub, "big", event(&[("t-1", &[1], "a")])).await;
        assert_eq!(status, 413);
        assert_eq!(headers["x-amzn-errortype"], "RequestEntityTooLargeException");

        let (status, headers, body) = call(&stub, "g", event(&[("t-2", &[5], "a poison pill")])).await;
        assert_eq!(status, 200);
        assert_eq!(headers["x-amz-function-error"], "Unhandled");
        assert!(body.contains("poison"));

        assert_eq!(stub.requests().len(), 4);
        let reached: Vec<Outcome> = stub.invocations().iter().map(|i| i.outcome).collect();
        assert_eq!(reached, [Outcome::Success, Outcome::Success, Outcome::FunctionError]);
        assert_eq!(stub.invocation_count("f"), 2);
        assert_eq!(stub.counts(), (4, 4));
    }

    #[tokio::test]
    async fn behaviours_still_apply_without_rules() {
        let stub = InvokeStub::start().await;
        stub.set_behaviour("f", StubBehaviour::Throttle(1));
        let (status, headers, _) = call(&stub, "f", event(&[("t-0", &[1], "a")])).await;
        assert_eq!(status, 429);
        assert_eq!(headers["x-amzn-errortype"], "TooManyRequestsException");
        assert_eq!(call(&stub, "f", event(&[("t-0", &[1], "a")])).await.0, 200);
        assert_eq!(stub.invocations().len(), 1, "a throttled request never reached the function");
    }

    #[tokio::test]
    async fn overlapping_invocations_of_a_partition_are_tracked() {
        let stub = InvokeStub::start().await;
        stub.add_rule(Rule::reply(Reply::success()).delay(Duration::from_millis(300)));
        let a = tokio::spawn({
            let stub = stub.clone();
            async move { call(&stub, "f", event(&[("t-0", &[1], "a"), ("t-1", &[1], "a")])).await }
        });
        let b = tokio::spawn({
            let stub = stub.clone();
            async move { call(&stub, "f", event(&[("t-0", &[2], "a")])).await }
        });
        let c = tokio::spawn({
            let stub = stub.clone();
            async move { call(&stub, "f", event(&[("t-2", &[2], "a")])).await }
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        while stub.in_flight().values().sum::<usize>() < 4 {
            assert!(Instant::now() < deadline, "invocations did not start: {:?}", stub.in_flight());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for task in [a, b, c] {
            assert_eq!(task.await.unwrap().0, 200);
        }
        let max = stub.max_in_flight_per_partition();
        assert_eq!(max.get("t-0"), Some(&2));
        assert_eq!(max.get("t-1"), Some(&1));
        assert_eq!(max.get("t-2"), Some(&1));
        assert_eq!(stub.max_in_flight_of_one_partition(), 2);
        assert!(stub.in_flight().is_empty());
    }

    #[tokio::test]
    async fn an_abandoned_invocation_stays_in_flight_until_the_function_ends() {
        let stub = InvokeStub::start().await;
        stub.add_rule(Rule::reply(Reply::success()).delay(Duration::from_millis(500)));
        let caller = tokio::spawn({
            let stub = stub.clone();
            async move { call(&stub, "f", event(&[("t-0", &[1], "a")])).await }
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        while stub.in_flight().is_empty() {
            assert!(Instant::now() < deadline, "the invocation did not start");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        caller.abort();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(stub.in_flight().get("t-0"), Some(&1), "the function is still running");
        while !stub.in_flight().is_empty() {
            assert!(Instant::now() < deadline, "the invocation never ended");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(stub.invocations().len(), 1);
    }
}

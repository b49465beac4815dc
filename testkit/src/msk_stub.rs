//! An in-repo Amazon MSK control plane: the two REST routes kafka-esm calls, with the JSON
//! shapes and errors of the MSK API reference as aws-sdk-kafka reads them.
//!
//! - `GET /v1/clusters/{clusterArn}` (DescribeCluster) and `GET /api/v2/clusters/{clusterArn}`
//!   (DescribeClusterV2, with `clusterType` `PROVISIONED` or `SERVERLESS`): `{"clusterInfo":
//!   {"clusterArn", "state", "stateInfo", …}}`. Both count as [`MskRoute::DescribeCluster`].
//! - `GET /v1/clusters/{clusterArn}/bootstrap-brokers` (GetBootstrapBrokers):
//!   `{"bootstrapBrokerString", "bootstrapBrokerStringTls", "bootstrapBrokerStringSaslScram",
//!   "bootstrapBrokerStringSaslIam"}`, each present only when the cluster has such brokers.
//!
//! The ARN arrives URL-encoded in one path segment. An unknown cluster is 404
//! `NotFoundException` on both routes; injected failures answer with any status and error type.
//! Errors carry `x-amzn-ErrorType` and a `{"message": …}` body, as the service sends them. Every
//! call is recorded per route with its time, so tests can check caching and backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

/// The control-plane operations the stub serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MskRoute {
    DescribeCluster,
    GetBootstrapBrokers,
}

/// One cluster as the control plane describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MskCluster {
    /// `ClusterState` as the API spells it: `ACTIVE`, `CREATING`, `UPDATING`, `DELETING`, `FAILED`, …
    pub state: String,
    /// Plaintext brokers (`bootstrapBrokerString`), comma-separated.
    pub brokers: Option<String>,
    /// TLS brokers (`bootstrapBrokerStringTls`), comma-separated.
    pub brokers_tls: Option<String>,
    /// SASL/SCRAM brokers (`bootstrapBrokerStringSaslScram`): SCRAM authentication is on.
    pub brokers_sasl_scram: Option<String>,
    /// SASL/IAM brokers (`bootstrapBrokerStringSaslIam`): IAM access control is on.
    pub brokers_sasl_iam: Option<String>,
    /// MSK Serverless (DescribeClusterV2's `clusterType`); v1 DescribeCluster refuses it.
    pub serverless: bool,
}

impl MskCluster {
    /// An `ACTIVE` cluster serving plaintext on `brokers`.
    pub fn active_plaintext(brokers: &str) -> Self {
        Self {
            state: "ACTIVE".into(),
            brokers: Some(brokers.into()),
            brokers_tls: None,
            brokers_sasl_scram: None,
            brokers_sasl_iam: None,
            serverless: false,
        }
    }

    /// An `ACTIVE` MSK Serverless cluster: IAM only.
    pub fn serverless(brokers_sasl_iam: &str) -> Self {
        Self {
            brokers: None,
            brokers_sasl_iam: Some(brokers_sasl_iam.into()),
            serverless: true,
            ..Self::active_plaintext("")
        }
    }
}

/// An error the stub answers with instead of the real response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MskFailure {
    pub status: u16,
    /// The `x-amzn-ErrorType`, e.g. `InternalServerErrorException`, `ServiceUnavailableException`,
    /// `ForbiddenException`, `TooManyRequestsException`.
    pub error_type: String,
    /// How many calls fail before the route answers normally again.
    pub times: usize,
}

#[derive(Debug, Default)]
struct MskState {
    clusters: Mutex<HashMap<String, MskCluster>>,
    failures: Mutex<HashMap<MskRoute, MskFailure>>,
    calls: Mutex<HashMap<MskRoute, Vec<Instant>>>,
}

/// A running stub; cheap to clone.
#[derive(Debug, Clone)]
pub struct MskStub {
    state: Arc<MskState>,
    /// `http://127.0.0.1:PORT`, for an `SdkConfig`'s endpoint URL.
    pub endpoint: String,
}

/// A fresh cluster ARN in the stub's account and Region.
pub fn cluster_arn(name: &str) -> String {
    format!("arn:aws:kafka:us-east-1:123456789012:cluster/{name}/{}-1", uuid::Uuid::new_v4())
}

impl MskStub {
    /// Starts on a free port with no clusters.
    pub async fn start() -> Self {
        let state = Arc::new(MskState::default());
        let app = Router::new()
            .route("/v1/clusters/{arn}", get(describe_cluster))
            .route("/api/v2/clusters/{arn}", get(describe_cluster_v2))
            .route("/v1/clusters/{arn}/bootstrap-brokers", get(get_bootstrap_brokers))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.expect("bind the MSK stub");
        let addr = listener.local_addr().expect("stub address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { state, endpoint: format!("http://{addr}") }
    }

    /// Adds or replaces a cluster.
    pub fn put_cluster(&self, arn: &str, cluster: MskCluster) {
        self.state.clusters.lock().expect("lock").insert(arn.to_owned(), cluster);
    }

    /// Moves a known cluster to `state` (`ACTIVE`, `CREATING`, …).
    pub fn set_state(&self, arn: &str, state: &str) {
        if let Some(cluster) = self.state.clusters.lock().expect("lock").get_mut(arn) {
            cluster.state = state.to_owned();
        }
    }

    /// Makes the next `failure.times` calls of `route` fail.
    pub fn fail(&self, route: MskRoute, failure: MskFailure) {
        self.state.failures.lock().expect("lock").insert(route, failure);
    }

    /// Calls of `route` so far, failed ones included.
    pub fn calls(&self, route: MskRoute) -> usize {
        self.call_times(route).len()
    }

    /// When each call of `route` arrived, in order.
    pub fn call_times(&self, route: MskRoute) -> Vec<Instant> {
        self.state.calls.lock().expect("lock").get(&route).cloned().unwrap_or_default()
    }
}

fn aws_error(status: StatusCode, kind: &str, message: &str) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    (
        status,
        [("x-amzn-errortype", kind), ("x-amzn-requestid", request_id.as_str()), ("content-type", "application/json")],
        json!({"message": message}).to_string(),
    )
        .into_response()
}

/// Records the call, then answers with an injected failure, 404 for an unknown cluster, or
/// `body` of the cluster.
fn answer(state: &MskState, route: MskRoute, arn: &str, body: impl FnOnce(MskCluster) -> Value) -> Response {
    state.calls.lock().expect("lock").entry(route).or_default().push(Instant::now());
    if let Some(failure) = state.failures.lock().expect("lock").get_mut(&route)
        && failure.times > 0
    {
        failure.times -= 1;
        let status = StatusCode::from_u16(failure.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return aws_error(status, &failure.error_type, "injected by the MSK stub");
    }
    let cluster = state.clusters.lock().expect("lock").get(arn).cloned();
    match cluster {
        Some(cluster) => {
            (StatusCode::OK, [("content-type", "application/json")], body(cluster).to_string()).into_response()
        }
        None => aws_error(StatusCode::NOT_FOUND, "NotFoundException", &format!("Cluster {arn} does not exist.")),
    }
}

async fn describe_cluster(State(state): State<Arc<MskState>>, Path(arn): Path<String>) -> Response {
    answer(&state, MskRoute::DescribeCluster, &arn, |cluster| {
        let mut info = json!({
            "clusterArn": arn,
            "clusterName": arn.split('/').nth(1).unwrap_or_default(),
            "creationTime": "2026-01-01T00:00:00.000Z",
            "currentVersion": "K3AEGXETSR30VB",
            "numberOfBrokerNodes": 3,
            "state": cluster.state,
        });
        if cluster.state == "FAILED" {
            info["stateInfo"] = json!({"code": "InternalError", "message": "The cluster failed to create."});
        }
        json!({"clusterInfo": info})
    })
}

async fn describe_cluster_v2(State(state): State<Arc<MskState>>, Path(arn): Path<String>) -> Response {
    answer(&state, MskRoute::DescribeCluster, &arn, |cluster| {
        let mut info = json!({
            "clusterArn": arn,
            "clusterName": arn.split('/').nth(1).unwrap_or_default(),
            "clusterType": if cluster.serverless { "SERVERLESS" } else { "PROVISIONED" },
            "creationTime": "2026-01-01T00:00:00.000Z",
            "currentVersion": "K3AEGXETSR30VB",
            "state": cluster.state,
        });
        if cluster.serverless {
            info["serverless"] = json!({"clientAuthentication": {"sasl": {"iam": {"enabled": true}}}});
        } else {
            info["provisioned"] = json!({
                "numberOfBrokerNodes": 3,
                "clientAuthentication": {
                    "sasl": {
                        "iam": {"enabled": cluster.brokers_sasl_iam.is_some()},
                        "scram": {"enabled": cluster.brokers_sasl_scram.is_some()},
                    },
                    "unauthenticated": {"enabled": cluster.brokers.is_some() || cluster.brokers_tls.is_some()},
                },
            });
        }
        if cluster.state == "FAILED" {
            info["stateInfo"] = json!({"code": "InternalError", "message": "The cluster failed to create."});
        }
        json!({"clusterInfo": info})
    })
}

async fn get_bootstrap_brokers(State(state): State<Arc<MskState>>, Path(arn): Path<String>) -> Response {
    answer(&state, MskRoute::GetBootstrapBrokers, &arn, |cluster| {
        let mut body = Map::new();
        // A cluster still being created has no brokers to list yet.
        if cluster.state != "CREATING" {
            if let Some(plain) = cluster.brokers {
                body.insert("bootstrapBrokerString".into(), plain.into());
            }
            if let Some(tls) = cluster.brokers_tls {
                body.insert("bootstrapBrokerStringTls".into(), tls.into());
            }
            if let Some(scram) = cluster.brokers_sasl_scram {
                body.insert("bootstrapBrokerStringSaslScram".into(), scram.into());
            }
            if let Some(iam) = cluster.brokers_sasl_iam {
                body.insert("bootstrapBrokerStringSaslIam".into(), iam.into());
            }
        }
        Value::Object(body)
    })
}

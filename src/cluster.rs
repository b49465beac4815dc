//! Where a mapping's brokers are and how to talk to them.
//!
//! Self-managed clusters list their bootstrap servers in the mapping. MSK clusters are resolved by
//! ARN: `kafka:DescribeCluster` says whether the cluster can be consumed (still `CREATING`: wait;
//! `DELETING`, `FAILED` or gone: stop the mapping), then `kafka:GetBootstrapBrokers` gives the
//! brokers, the TLS string when the cluster offers one. TLS trusts the system roots unless a `SERVER_ROOT_CA_CERTIFICATE` names a private CA,
//! either as a Secrets Manager secret (`{"certificate": PEM}`, as AWS defines it) or, as a
//! kafka-esm extension, a `file://` path to a PEM bundle shipped with the function.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_sdk_kafka::config::http::HttpResponse;
use aws_sdk_kafka::config::retry::RetryConfig;
use aws_sdk_kafka::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kafka::types::{ClusterState, StateInfo};
use tracing::info;

use crate::delivery::policy::StopReason;
use crate::kafka::{CaSource, Security};
use crate::model::mapping::{EventSourceMapping, KafkaCluster, SourceAccessType};

/// Brokers and transport for one mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Comma-separated, as both librdkafka and the event's `bootstrapServers` want it.
    pub bootstrap_servers: String,
    pub security: Security,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    #[error("{1}")]
    Unrecoverable(StopReason, String),
    #[error("{0}")]
    Transient(String),
}

/// Resolves connections, caching MSK answers and secrets for the life of one poller.
#[derive(Debug)]
pub struct ClusterResolver {
    kafka: aws_sdk_kafka::Client,
    secrets: aws_sdk_secretsmanager::Client,
    cache: Mutex<HashMap<String, Connection>>,
}

impl ClusterResolver {
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        Self {
            // The poller retries a failed resolve with its reconnect backoff (logging each
            // failure), so the SDK does not retry on its own.
            kafka: aws_sdk_kafka::Client::from_conf(
                aws_sdk_kafka::config::Builder::from(sdk).retry_config(RetryConfig::disabled()).build(),
            ),
            secrets: aws_sdk_secretsmanager::Client::new(sdk),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The mapping's connection, asked of the control plane once per mapping version.
    ///
    /// # Errors
    /// [`ResolveError::Transient`] when the MSK control plane or the CA secret cannot be read now
    /// or the cluster is still being created; [`ResolveError::Unrecoverable`] when the cluster is
    /// gone, failed or denied to the poller, or the CA is not valid.
    pub async fn connection(&self, mapping: &EventSourceMapping) -> Result<Connection, ResolveError> {
        let cache_key = format!("{}#{}", mapping.uuid, mapping.version);
        if let Some(hit) = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&cache_key) {
            return Ok(hit.clone());
        }
        let custom_ca = match mapping.access(SourceAccessType::ServerRootCaCertificate).next() {
            Some(config) => Some(self.ca_pem(&config.uri).await?),
            None => None,
        };
        let connection = match mapping.cluster() {
            KafkaCluster::SelfManaged { bootstrap_servers } => Connection {
                bootstrap_servers: bootstrap_servers.join(","),
                // AWS connects to self-managed brokers over TLS when it is given a CA to trust.
                security: match custom_ca {
                    Some(pem) => Security::Tls { ca: CaSource::Pem(pem) },
                    None => Security::Plaintext,
                },
            },
            KafkaCluster::Msk { cluster_arn } => self.msk(&cluster_arn, custom_ca).await?,
        };
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(cache_key, connection.clone());
        Ok(connection)
    }

    /// Brokers of an MSK cluster that can be consumed now.
    async fn msk(&self, cluster_arn: &str, custom_ca: Option<String>) -> Result<Connection, ResolveError> {
        let described = self
            .kafka
            .describe_cluster()
            .cluster_arn(cluster_arn)
            .send()
            .await
            .map_err(|e| control_plane_error("DescribeCluster", cluster_arn, &e))?;
        let info = described.cluster_info.as_ref();
        check_state(cluster_arn, info.and_then(|i| i.state.as_ref()), info.and_then(|i| i.state_info.as_ref()))?;
        let out = self
            .kafka
            .get_bootstrap_brokers()
            .cluster_arn(cluster_arn)
            .send()
            .await
            .map_err(|e| control_plane_error("GetBootstrapBrokers", cluster_arn, &e))?;
        let ca = custom_ca.map_or(CaSource::System, CaSource::Pem);
        let connection = match (out.bootstrap_broker_string_tls, out.bootstrap_broker_string) {
            (Some(tls), _) if !tls.is_empty() => Connection { bootstrap_servers: tls, security: Security::Tls { ca } },
            (_, Some(plain)) if !plain.is_empty() => {
                Connection { bootstrap_servers: plain, security: Security::Plaintext }
            }
            _ => {
                return Err(ResolveError::Unrecoverable(
                    StopReason::EsmConfigNotValid,
                    format!(
                        "PROBLEM: cluster {cluster_arn} offers no unauthenticated TLS or plaintext brokers (IAM/SASL authentication is not supported yet)"
                    ),
                ));
            }
        };
        info!(cluster = cluster_arn, brokers = %connection.bootstrap_servers, "Resolved the MSK cluster's brokers.");
        Ok(connection)
    }

    async fn ca_pem(&self, uri: &str) -> Result<String, ResolveError> {
        let invalid = |detail: String| {
            ResolveError::Unrecoverable(
                StopReason::EsmConfigNotValid,
                format!("PROBLEM: SERVER_ROOT_CA_CERTIFICATE {uri}: {detail}"),
            )
        };
        if let Some(path) = uri.strip_prefix("file://") {
            let pem = std::fs::read_to_string(path).map_err(|e| invalid(format!("cannot read {path}: {e}")))?;
            return check_pem(&pem).map_err(invalid);
        }
        if !uri.starts_with("arn:aws:secretsmanager:") {
            return Err(invalid("must be a Secrets Manager secret ARN or a file:// path".into()));
        }
        let out = self.secrets.get_secret_value().secret_id(uri).send().await.map_err(|e| {
            if e.raw_response().is_some_and(|r| r.status().is_server_error()) || e.raw_response().is_none() {
                ResolveError::Transient(format!("cannot read secret {uri}: {}", DisplayErrorContext(&e)))
            } else {
                invalid(format!("cannot read the secret: {}", DisplayErrorContext(&e)))
            }
        })?;
        let text = out.secret_string.ok_or_else(|| invalid("the secret has no SecretString".into()))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|_| invalid("the secret is not JSON".into()))?;
        let pem = json
            .get("certificate")
            .and_then(|v| v.as_str())
            .ok_or_else(|| invalid("the secret has no \"certificate\" field".into()))?;
        check_pem(pem).map_err(invalid)
    }
}

/// Whether a cluster in `state` can be consumed now, later or never.
fn check_state(
    cluster_arn: &str,
    state: Option<&ClusterState>,
    detail: Option<&StateInfo>,
) -> Result<(), ResolveError> {
    match state {
        Some(ClusterState::Creating) => Err(ResolveError::Transient(format!(
            "MSK cluster {cluster_arn} is CREATING; the mapping starts once it is ACTIVE"
        ))),
        Some(state @ (ClusterState::Deleting | ClusterState::Failed)) => {
            let why = detail
                .and_then(|d| d.message.as_deref().or(d.code.as_deref()))
                .map(|m| format!(" ({m})"))
                .unwrap_or_default();
            Err(ResolveError::Unrecoverable(
                StopReason::EsmConfigNotValid,
                format!(
                    "PROBLEM: MSK cluster {cluster_arn} is {}{why}. EventSourceArn cannot be changed: delete this mapping and create one for an ACTIVE cluster.",
                    state.as_str()
                ),
            ))
        }
        // ACTIVE, and the states of a running cluster (UPDATING, MAINTENANCE, HEALING,
        // REBOOTING_BROKER): MSK works on one broker at a time and the others keep serving.
        // GetBootstrapBrokers decides for states this SDK does not know.
        _ => Ok(()),
    }
}

/// What a failed MSK control-plane call means for the mapping: a missing cluster or a denied call
/// needs a human; anything else (throttling, 5xx, network) is retried.
fn control_plane_error<E>(operation: &str, cluster_arn: &str, error: &SdkError<E, HttpResponse>) -> ResolveError
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
{
    let status = error.raw_response().map(|r| r.status().as_u16());
    let cause = match (status, error.code()) {
        (Some(status), Some(code)) => format!("{status} {code}: {}", error.message().unwrap_or("no message")),
        // No answer (network, timeout) or not an AWS error: the whole chain says why.
        _ => DisplayErrorContext(error).to_string(),
    };
    match (status, error.code()) {
        (Some(404), _) | (_, Some("NotFoundException")) => ResolveError::Unrecoverable(
            StopReason::EsmConfigNotValid,
            format!(
                "PROBLEM: MSK cluster {cluster_arn} does not exist in the poller's account and Region (kafka:{operation}: {cause}). EventSourceArn cannot be changed: delete this mapping and create one for an existing cluster."
            ),
        ),
        (Some(403), _) | (_, Some("ForbiddenException" | "AccessDeniedException")) => ResolveError::Unrecoverable(
            StopReason::EventSourceAuthzError,
            format!(
                "PROBLEM: the poller may not read MSK cluster {cluster_arn} (kafka:{operation}: {cause}). Allow kafka:DescribeCluster and kafka:GetBootstrapBrokers on it in the poller's role, then enable the mapping."
            ),
        ),
        _ => ResolveError::Transient(format!("kafka:{operation} for {cluster_arn} failed: {cause}")),
    }
}

fn check_pem(pem: &str) -> Result<String, String> {
    if pem.contains("-----BEGIN CERTIFICATE-----") {
        Ok(pem.to_owned())
    } else {
        Err("no PEM certificate found".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:kafka:us-east-1:123456789012:cluster/orders/abcd-1";

    #[test]
    fn cluster_states_wait_stop_or_go() {
        assert!(
            matches!(check_state(ARN, Some(&ClusterState::Creating), None), Err(ResolveError::Transient(m)) if m.contains(ARN))
        );
        let failed = StateInfo::builder().code("InternalError").message("broker capacity").build();
        match check_state(ARN, Some(&ClusterState::Failed), Some(&failed)) {
            Err(ResolveError::Unrecoverable(StopReason::EsmConfigNotValid, m)) => {
                assert!(m.starts_with("PROBLEM: ") && m.contains(ARN) && m.contains("FAILED (broker capacity)"), "{m}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            check_state(ARN, Some(&ClusterState::Deleting), None),
            Err(ResolveError::Unrecoverable(StopReason::EsmConfigNotValid, _))
        ));
        for running in [ClusterState::Active, ClusterState::Updating, ClusterState::Maintenance, ClusterState::Healing]
        {
            assert_eq!(check_state(ARN, Some(&running), None), Ok(()), "{running:?}");
        }
        assert_eq!(check_state(ARN, None, None), Ok(()));
    }
}

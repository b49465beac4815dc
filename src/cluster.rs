//! Where a mapping's brokers are and how to talk to them.
//!
//! Self-managed clusters list their bootstrap servers in the mapping. MSK clusters are resolved by
//! ARN through `kafka:GetBootstrapBrokers`, picking the TLS broker string when the cluster offers
//! one. TLS trusts the system roots unless a `SERVER_ROOT_CA_CERTIFICATE` names a private CA,
//! either as a Secrets Manager secret (`{"certificate": PEM}`, as AWS defines it) or, as a
//! kafka-esm extension, a `file://` path to a PEM bundle shipped with the function.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_sdk_kafka::error::DisplayErrorContext;

use crate::error::StopReason;
use crate::kafka::{CaSource, Security};
use crate::mapping::{EventSourceMapping, KafkaCluster, SourceAccessType};

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
            kafka: aws_sdk_kafka::Client::new(sdk),
            secrets: aws_sdk_secretsmanager::Client::new(sdk),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// # Errors
    /// The MSK control plane or the CA secret could not be read.
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
            KafkaCluster::Msk { cluster_arn } => {
                let out = self.kafka.get_bootstrap_brokers().cluster_arn(&cluster_arn).send().await.map_err(|e| {
                    let code = e.as_service_error().map(|s| s.to_string()).unwrap_or_default();
                    let text = format!("GetBootstrapBrokers for {cluster_arn} failed: {}", DisplayErrorContext(&e));
                    if code.contains("NotFound") || e.raw_response().is_some_and(|r| r.status().as_u16() == 404) {
                        ResolveError::Unrecoverable(StopReason::EsmConfigNotValid, format!("PROBLEM: {text}"))
                    } else if e.raw_response().is_some_and(|r| r.status().as_u16() == 403) {
                        ResolveError::Unrecoverable(StopReason::EventSourceAuthzError, format!("PROBLEM: {text}"))
                    } else {
                        ResolveError::Transient(text)
                    }
                })?;
                let ca = custom_ca.map_or(CaSource::System, CaSource::Pem);
                match (out.bootstrap_broker_string_tls, out.bootstrap_broker_string) {
                    (Some(tls), _) if !tls.is_empty() => {
                        Connection { bootstrap_servers: tls, security: Security::Tls { ca } }
                    }
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
                }
            }
        };
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(cache_key, connection.clone());
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

fn check_pem(pem: &str) -> Result<String, String> {
    if pem.contains("-----BEGIN CERTIFICATE-----") {
        Ok(pem.to_owned())
    } else {
        Err("no PEM certificate found".into())
    }
}

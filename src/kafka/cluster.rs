//! Where a mapping's brokers are and how to talk to them: the transport and authentication AWS
//! would choose for the same mapping.
//!
//! `SourceAccessConfigurations` name at most one authentication secret (`SASL_SCRAM_512_AUTH`,
//! `SASL_SCRAM_256_AUTH`, `BASIC_AUTH` or `CLIENT_CERTIFICATE_TLS_AUTH`) and optionally a private
//! root CA (`SERVER_ROOT_CA_CERTIFICATE`). Self-managed clusters: SASL always over TLS (AWS
//! supports neither SASL/SCRAM nor SASL/PLAIN over plaintext, and kafka-esm offers no opt-in for
//! it), a client certificate over TLS, TLS alone when only a CA is given, else plaintext.
//!
//! MSK clusters are resolved by ARN: `kafka:DescribeClusterV2` (provisioned and Serverless alike)
//! says whether the cluster can be consumed (still `CREATING`: wait; `DELETING`, `FAILED` or gone:
//! stop the mapping), then `kafka:GetBootstrapBrokers` gives the broker strings, and the broker
//! type follows AWS's documented order: an mTLS secret → the TLS brokers; a SASL/SCRAM secret →
//! the SASL/SCRAM brokers; no secret and IAM on (the cluster lists SASL/IAM brokers; MSK
//! Serverless always) → IAM; no secret, no IAM → unauthenticated TLS, else plaintext. Like AWS,
//! kafka-esm never falls back to a weaker broker type than the secret asks for.
//!
//! TLS trusts the system roots unless a `SERVER_ROOT_CA_CERTIFICATE` names a private CA, either
//! as a Secrets Manager secret (`{"certificate": PEM}`, as AWS defines it) or, as a kafka-esm
//! extension, a `file://` path to a PEM bundle shipped with the function (a regular file of at
//! most 1 MiB). kafka-esm also honours it for MSK (AWS does not need it there: MSK brokers carry
//! public certificates).
//!
//! `VPC_SUBNET` / `VPC_SECURITY_GROUP` are accepted as AWS accepts them (self-managed clusters,
//! `subnet:ID` / `security_group:ID`), but the poller does not create network interfaces per
//! mapping as AWS does: it runs in the subnets and security groups its deployment gives it. When
//! the deployment tells the resolver where the poller runs ([`PollerNetwork`]), a mapping whose
//! subnets or security groups are not among them is warned about once per mapping version; when
//! it does not, the values are logged once as not checked. They never change how the poller
//! connects.
//!
//! Resolved connections are cached per mapping version, secrets included. After the brokers
//! refused credentials, [`ClusterResolver::after_refusal`] reads the secrets again: a rotated
//! secret gives a new connection at once; the same secret, still refused after
//! [`ROTATION_GRACE`], means the mapping must stop.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_kafka::config::http::HttpResponse;
use aws_sdk_kafka::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kafka::types::{ClusterState, ClusterType, StateInfo};
use tracing::{info, warn};

use super::msk_iam::MskIamSigner;
use super::{CaSource, Sasl, Security};
use crate::aws::secrets::{CLIENT_CERTIFICATE_LAYOUT, ROOT_CA_LAYOUT, SecretError, SecretReader, USER_PASSWORD_LAYOUT};
use crate::delivery::policy::StopReason;
use crate::model::access::{AccessPlan, AuthKind, access_plan, is_secret_arn};
use crate::model::mapping::{EventSourceMapping, KafkaCluster};

/// The largest `file://` CA bundle read (a long chain is a few tens of KiB).
pub const MAX_CA_FILE_BYTES: u64 = 1024 * 1024;

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
    /// The mapping must stop with this reason; the message is its `LastProcessingResult`.
    #[error("{1}")]
    Unrecoverable(StopReason, String),
    #[error("{0}")]
    Transient(String),
}

impl From<SecretError> for ResolveError {
    fn from(e: SecretError) -> Self {
        match e.stop_reason() {
            Some(reason) => Self::Unrecoverable(reason, format!("PROBLEM: {e}")),
            None => Self::Transient(e.to_string()),
        }
    }
}

/// The subnets and security groups the poller runs in, when the deployment says so (used only
/// to warn about `VPC_SUBNET` / `VPC_SECURITY_GROUP` entries that point elsewhere).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollerNetwork {
    pub subnet_ids: Vec<String>,
    pub security_group_ids: Vec<String>,
}

#[derive(Debug)]
struct Cached {
    version: u64,
    connection: Connection,
    /// `(ARN, VersionId)` of every secret the connection was built from.
    secrets: Vec<(String, Option<String>)>,
    /// When the brokers first refused these secrets (see [`ClusterResolver::after_refusal`]).
    first_refusal: Option<std::time::Instant>,
}

/// How long refused credentials are retried while their secret stays the same, in case a
/// rotation is half done (the password changed on the cluster, the new version not yet current).
/// Short enough that a wrong password stops the mapping within about 15 s of reconnect backoff.
pub const ROTATION_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// What to do after the brokers refused a mapping's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthRetry {
    /// A secret changed: reconnect now with the new one.
    Reconnect,
    /// Nothing changed yet: retry after the usual backoff.
    Backoff,
    /// Nothing changed for too long: stop the mapping with the refusal.
    Stop,
}

/// Resolves connections, caching MSK answers and secrets for the life of one poller.
#[derive(Debug)]
pub struct ClusterResolver {
    kafka: aws_sdk_kafka::Client,
    secrets: SecretReader,
    /// The poller's credentials, for MSK IAM tokens.
    credentials: Option<SharedCredentialsProvider>,
    network: Option<PollerNetwork>,
    cache: Mutex<HashMap<String, Cached>>,
}

impl ClusterResolver {
    /// Clients from the poller's SDK configuration (endpoints from `AWS_ENDPOINT_URL_KAFKA` and
    /// `AWS_ENDPOINT_URL_SECRETSMANAGER` when set).
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        Self::from_configs(sdk, sdk)
    }

    /// Like [`ClusterResolver::new`], with the MSK and Secrets Manager clients from separate
    /// configurations (tests run both against different local endpoints in one process). MSK
    /// IAM tokens use `kafka_sdk`'s credentials.
    pub fn from_configs(kafka_sdk: &aws_config::SdkConfig, secrets_sdk: &aws_config::SdkConfig) -> Self {
        Self {
            kafka: crate::aws::kafka_client(kafka_sdk),
            secrets: SecretReader::new(crate::aws::secrets_client(secrets_sdk)),
            credentials: kafka_sdk.credentials_provider(),
            network: None,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Where the poller runs, to check `VPC_SUBNET` / `VPC_SECURITY_GROUP` against.
    #[must_use]
    pub fn with_network(mut self, network: PollerNetwork) -> Self {
        self.network = Some(network);
        self
    }

    /// The mapping's connection, asked of the control plane and Secrets Manager once per mapping
    /// version.
    ///
    /// # Errors
    /// [`ResolveError::Transient`] when the MSK control plane or Secrets Manager cannot answer
    /// now or the cluster is still being created; [`ResolveError::Unrecoverable`] when the
    /// cluster is gone, failed or denied to the poller, a secret is missing or malformed, or the
    /// access configuration is not one AWS accepts.
    pub async fn connection(&self, mapping: &EventSourceMapping) -> Result<Connection, ResolveError> {
        if let Some(hit) = self.lock().get(&mapping.uuid).filter(|c| c.version == mapping.version) {
            return Ok(hit.connection.clone());
        }
        let (connection, secrets) = self.resolve(mapping).await?;
        info!(
            mapping = %mapping.uuid,
            brokers = %connection.bootstrap_servers,
            security = connection.security.describe(),
            "Resolved the mapping's brokers."
        );
        self.lock().insert(
            mapping.uuid.clone(),
            Cached { version: mapping.version, connection: connection.clone(), secrets, first_refusal: None },
        );
        Ok(connection)
    }

    /// Forgets what was resolved for `mapping` (its secrets included): the next
    /// [`ClusterResolver::connection`] asks again.
    pub fn invalidate(&self, mapping: &EventSourceMapping) {
        self.lock().remove(&mapping.uuid);
    }

    /// After the brokers refused the mapping's credentials or certificates (or the client refused
    /// the broker's): reads its secrets again and says what to do.
    ///
    /// - a secret changed (a rotation the poller had not seen): the cached connection is dropped
    ///   and the mapping should reconnect at once ([`AuthRetry::Reconnect`]);
    /// - no secret changed, for less than [`ROTATION_GRACE`] since the first refusal: retry with
    ///   the usual backoff ([`AuthRetry::Backoff`]) — a rotation function may have changed the
    ///   password on the cluster a moment before it makes the new secret version current;
    /// - no secret changed for longer, or the mapping uses no secret: stop ([`AuthRetry::Stop`]).
    ///
    /// # Errors
    /// A secret cannot be read now ([`ResolveError::Transient`]) or any more (unrecoverable).
    pub async fn after_refusal(&self, mapping: &EventSourceMapping) -> Result<AuthRetry, ResolveError> {
        let used = self.lock().get(&mapping.uuid).map(|c| c.secrets.clone()).unwrap_or_default();
        if used.is_empty() {
            return Ok(AuthRetry::Stop);
        }
        for (arn, version) in &used {
            let changed = match self.secrets.read(arn, "").await {
                Ok(fresh) => fresh.version_id != *version,
                // Not JSON any more, or a field gone: it changed, and resolving again says how.
                Err(SecretError::NotJson { .. } | SecretError::MissingField { .. } | SecretError::NotText { .. }) => {
                    true
                }
                Err(e) => return Err(e.into()),
            };
            if changed {
                info!(mapping = %mapping.uuid, secret = %arn, "The secret changed since it was read; reconnecting with the new one.");
                self.invalidate(mapping);
                return Ok(AuthRetry::Reconnect);
            }
        }
        let now = std::time::Instant::now();
        let mut cache = self.lock();
        let Some(cached) = cache.get_mut(&mapping.uuid) else { return Ok(AuthRetry::Reconnect) };
        let first = match cached.first_refusal {
            // A refusal long after the last episode starts a new one.
            Some(first) if now.duration_since(first) < ROTATION_GRACE * 6 => first,
            _ => *cached.first_refusal.insert(now),
        };
        Ok(if now.duration_since(first) < ROTATION_GRACE { AuthRetry::Backoff } else { AuthRetry::Stop })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn resolve(
        &self,
        mapping: &EventSourceMapping,
    ) -> Result<(Connection, Vec<(String, Option<String>)>), ResolveError> {
        let cluster = mapping.cluster();
        let plan = access_plan(mapping, &cluster)
            .map_err(|e| ResolveError::Unrecoverable(StopReason::EsmConfigNotValid, format!("PROBLEM: {e}")))?;
        self.check_network(mapping, &plan);
        let mut used = Vec::new();
        let ca = match &plan.root_ca {
            Some(uri) => CaSource::Pem(self.ca_pem(uri, &mut used).await?),
            None => CaSource::System,
        };
        let auth = match &plan.auth {
            Some((kind, arn)) => Some(self.credentials(*kind, arn, &mut used).await?),
            None => None,
        };
        let connection = match cluster {
            KafkaCluster::SelfManaged { bootstrap_servers } => {
                let bootstrap_servers = bootstrap_servers.join(",");
                let security = match auth {
                    Some(Credentials::Sasl(sasl)) => Security::SaslSsl { ca, sasl },
                    Some(Credentials::Client(client)) => Security::Tls { ca, client: Some(client) },
                    // AWS connects to self-managed brokers over TLS when it is given a CA to trust.
                    None if plan.root_ca.is_some() => Security::Tls { ca, client: None },
                    None => Security::Plaintext,
                };
                Connection { bootstrap_servers, security }
            }
            KafkaCluster::Msk { cluster_arn } => self.msk(&cluster_arn, ca, auth).await?,
        };
        Ok((connection, used))
    }

    async fn credentials(
        &self,
        kind: AuthKind,
        arn: &str,
        used: &mut Vec<(String, Option<String>)>,
    ) -> Result<Credentials, ResolveError> {
        let layout = if kind == AuthKind::ClientCertificate { CLIENT_CERTIFICATE_LAYOUT } else { USER_PASSWORD_LAYOUT };
        let secret = self.secrets.read(arn, layout).await?;
        used.push((arn.to_owned(), secret.version_id.clone()));
        Ok(match kind {
            AuthKind::Scram256 => Credentials::Sasl(Sasl::ScramSha256(secret.user_password()?)),
            AuthKind::Scram512 => Credentials::Sasl(Sasl::ScramSha512(secret.user_password()?)),
            AuthKind::Plain => Credentials::Sasl(Sasl::Plain(secret.user_password()?)),
            AuthKind::ClientCertificate => {
                let client = secret.client_certificate()?;
                if !client.certificate_pem.expose().contains("-----BEGIN CERTIFICATE-----") {
                    return Err(ResolveError::Unrecoverable(
                        StopReason::EventSourceAuthnError,
                        "Provided certificate or private key is invalid".into(),
                    ));
                }
                Credentials::Client(client)
            }
        })
    }

    /// Brokers and security of an MSK cluster that can be consumed now.
    async fn msk(
        &self,
        cluster_arn: &str,
        ca: CaSource,
        auth: Option<Credentials>,
    ) -> Result<Connection, ResolveError> {
        let described = self
            .kafka
            .describe_cluster_v2()
            .cluster_arn(cluster_arn)
            .send()
            .await
            .map_err(|e| control_plane_error("DescribeClusterV2", cluster_arn, &e))?;
        let info = described.cluster_info.as_ref();
        check_state(cluster_arn, info.and_then(|i| i.state.as_ref()), info.and_then(|i| i.state_info.as_ref()))?;
        let serverless = info.and_then(|i| i.cluster_type.as_ref()) == Some(&ClusterType::Serverless);
        let out = self
            .kafka
            .get_bootstrap_brokers()
            .cluster_arn(cluster_arn)
            .send()
            .await
            .map_err(|e| control_plane_error("GetBootstrapBrokers", cluster_arn, &e))?;
        let present = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
        let invalid = |why: String| {
            ResolveError::Unrecoverable(
                StopReason::EsmConfigNotValid,
                format!("PROBLEM: MSK cluster {cluster_arn} {why}"),
            )
        };
        match auth {
            Some(Credentials::Client(client)) => {
                let brokers = present(out.bootstrap_broker_string_tls).ok_or_else(|| {
                    invalid("offers no TLS brokers for mutual TLS: turn on TLS client authentication on the cluster, or remove CLIENT_CERTIFICATE_TLS_AUTH".into())
                })?;
                Ok(Connection { bootstrap_servers: brokers, security: Security::Tls { ca, client: Some(client) } })
            }
            Some(Credentials::Sasl(sasl)) => {
                let brokers = present(out.bootstrap_broker_string_sasl_scram).ok_or_else(|| {
                    invalid(format!(
                        "offers no SASL/SCRAM brokers{}: turn on SASL/SCRAM authentication on the cluster, or remove SASL_SCRAM_512_AUTH to use IAM",
                        if serverless { " (MSK Serverless supports IAM only)" } else { "" }
                    ))
                })?;
                Ok(Connection { bootstrap_servers: brokers, security: Security::SaslSsl { ca, sasl } })
            }
            None => {
                if let Some(brokers) = present(out.bootstrap_broker_string_sasl_iam) {
                    let signer = self.iam_signer(cluster_arn).await?;
                    return Ok(Connection {
                        bootstrap_servers: brokers,
                        security: Security::SaslSsl { ca, sasl: Sasl::MskIam(signer) },
                    });
                }
                if let Some(brokers) = present(out.bootstrap_broker_string_tls) {
                    return Ok(Connection { bootstrap_servers: brokers, security: Security::Tls { ca, client: None } });
                }
                if let Some(brokers) = present(out.bootstrap_broker_string) {
                    return Ok(Connection { bootstrap_servers: brokers, security: Security::Plaintext });
                }
                Err(invalid(
                    "offers no IAM, TLS or plaintext brokers for a mapping without a secret: add the SASL_SCRAM_512_AUTH or CLIENT_CERTIFICATE_TLS_AUTH secret the cluster expects".into(),
                ))
            }
        }
    }

    /// A signer for the cluster's Region, with the poller's credentials already fetched.
    async fn iam_signer(&self, cluster_arn: &str) -> Result<Arc<MskIamSigner>, ResolveError> {
        let region = cluster_arn.split(':').nth(3).filter(|r| !r.is_empty()).ok_or_else(|| {
            ResolveError::Unrecoverable(
                StopReason::EsmConfigNotValid,
                format!("PROBLEM: {cluster_arn} names no Region"),
            )
        })?;
        let provider = self.credentials.clone().ok_or_else(|| {
            ResolveError::Transient(format!(
                "MSK cluster {cluster_arn} uses IAM access control and the poller has no AWS credentials"
            ))
        })?;
        let signer = MskIamSigner::new(region, provider);
        signer.prepare().await.map_err(|e| ResolveError::Transient(format!("MSK cluster {cluster_arn}: {e}")))?;
        Ok(signer)
    }

    async fn ca_pem(&self, uri: &str, used: &mut Vec<(String, Option<String>)>) -> Result<String, ResolveError> {
        let invalid = |detail: String| {
            ResolveError::Unrecoverable(
                StopReason::EsmConfigNotValid,
                format!("PROBLEM: SERVER_ROOT_CA_CERTIFICATE {uri}: {detail}"),
            )
        };
        if let Some(path) = uri.strip_prefix("file://") {
            let pem = read_ca_file(path).await.map_err(invalid)?;
            return check_pem(&pem).map_err(invalid);
        }
        if !is_secret_arn(uri) {
            return Err(invalid("must be a Secrets Manager secret ARN or a file:// path".into()));
        }
        let secret = self.secrets.read(uri, ROOT_CA_LAYOUT).await?;
        used.push((uri.to_owned(), secret.version_id.clone()));
        check_pem(&secret.root_ca()?).map_err(invalid)
    }

    fn check_network(&self, mapping: &EventSourceMapping, plan: &AccessPlan) {
        if plan.subnets.is_empty() && plan.security_groups.is_empty() {
            return;
        }
        match &self.network {
            Some(network) => {
                let foreign_subnets: Vec<&String> =
                    plan.subnets.iter().filter(|s| !network.subnet_ids.contains(s)).collect();
                let foreign_groups: Vec<&String> =
                    plan.security_groups.iter().filter(|s| !network.security_group_ids.contains(s)).collect();
                if !foreign_subnets.is_empty() || !foreign_groups.is_empty() {
                    warn!(
                        mapping = %mapping.uuid,
                        subnets = ?foreign_subnets,
                        security_groups = ?foreign_groups,
                        poller_subnets = ?network.subnet_ids,
                        poller_security_groups = ?network.security_group_ids,
                        "The mapping's VPC_SUBNET / VPC_SECURITY_GROUP are not where the poller runs; the poller connects from its own subnets and security groups."
                    );
                }
            }
            None => info!(
                mapping = %mapping.uuid,
                subnets = ?plan.subnets,
                security_groups = ?plan.security_groups,
                "VPC_SUBNET / VPC_SECURITY_GROUP are not checked: the poller connects from the subnets and security groups of its deployment."
            ),
        }
    }
}

/// What a mapping's secret turned into.
#[derive(Debug)]
enum Credentials {
    Sasl(Sasl),
    Client(crate::aws::secrets::ClientCertificate),
}

/// Reads a `file://` CA bundle: a regular file (not a FIFO, a device or a directory) of at most
/// [`MAX_CA_FILE_BYTES`], without blocking the runtime.
async fn read_ca_file(path: &str) -> Result<String, String> {
    let metadata = tokio::fs::metadata(path).await.map_err(|e| format!("cannot read {path}: {e}"))?;
    if !metadata.is_file() {
        return Err(format!("{path} is not a regular file"));
    }
    if metadata.len() > MAX_CA_FILE_BYTES {
        return Err(format!("{path} is larger than {MAX_CA_FILE_BYTES} bytes"));
    }
    let bytes = tokio::fs::read(path).await.map_err(|e| format!("cannot read {path}: {e}"))?;
    // The file may have grown since `metadata`.
    if bytes.len() as u64 > MAX_CA_FILE_BYTES {
        return Err(format!("{path} is larger than {MAX_CA_FILE_BYTES} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| format!("{path} is not PEM text"))
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
                "PROBLEM: the poller may not read MSK cluster {cluster_arn} (kafka:{operation}: {cause}). Allow kafka:DescribeClusterV2 and kafka:GetBootstrapBrokers on it in the poller's role, then enable the mapping."
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

    #[tokio::test]
    async fn ca_files_are_regular_and_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big = dir.path().join("big.pem");
        std::fs::write(&big, vec![b'a'; usize::try_from(MAX_CA_FILE_BYTES).expect("fits") + 1]).expect("write");
        assert!(read_ca_file(&big.display().to_string()).await.expect_err("too big").contains("larger than"));
        assert!(read_ca_file(&dir.path().display().to_string()).await.expect_err("dir").contains("not a regular file"));
        assert!(read_ca_file("/dev/zero").await.expect_err("device").contains("not a regular file"));
        let ok = dir.path().join("ca.pem");
        std::fs::write(&ok, "-----BEGIN CERTIFICATE-----\n").expect("write");
        assert!(read_ca_file(&ok.display().to_string()).await.is_ok());
    }
}

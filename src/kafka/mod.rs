//! The Kafka client: librdkafka (through `rdkafka`) with manual partition assignment and
//! consumer-group offset commits, no group rebalancing.
//!
//! One [`KafkaClient`] serves one mapping's topic in one poller. It resolves where each partition
//! starts (the group's committed offset, else the mapping's `StartingPosition`) and adds or removes
//! partitions one at a time as the poller's leases come and go (incremental assignment), each with
//! its own queue, so partitions are read and invoked in parallel while librdkafka keeps fetching
//! ahead into a bounded buffer (`queued.max.messages.kbytes` per partition, a share of the
//! client's budget: [`fetch_share_kbytes`]). It implements the
//! [`RecordSource`] and [`Checkpoint`] seams.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::client::{ClientContext, OAuthToken};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, Timestamp, TopicPartitionList};
use tracing::{debug, error, info, warn};

pub mod cluster;
mod connector;
pub mod destination;
pub mod msk_iam;

pub use connector::{KafkaConnector, KafkaMappingClient, kafka_disposition};

pub use crate::aws::secrets::{ClientCertificate, Secret, UserPassword};
use crate::delivery::checkpoint::{Checkpoint, CheckpointError};
use crate::delivery::event::{EncodedRecord, RecordEncoder, RecordView};
use crate::delivery::policy::StopReason;
use crate::delivery::record::{Header, KafkaRecord, RecordSource, SourceError, TimestampType};
use crate::model::mapping::StartingPosition;
use msk_iam::MskIamSigner;

/// How a client connects and how much it buffers. Its `Debug` shows no secret: every credential
/// in [`Security`] is a [`Secret`] or a signer, which print themselves redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSettings {
    /// Comma-separated `host:port` list.
    pub bootstrap_servers: String,
    pub group_id: String,
    pub security: Security,
    /// `fetch.wait.max.ms`: how long a broker may hold a fetch with no data. Kafka's default is
    /// 500; tansu holds every fetch about this long even when data is ready, so local runs use ~10.
    pub fetch_wait_max_ms: u32,
    /// `queued.max.messages.kbytes`, per partition here: the fetch-ahead buffer.
    pub queued_max_kbytes: u32,
    /// `fetch.queue.backoff.ms`: how long librdkafka waits before fetching again for a partition
    /// whose buffer is full. Its default (1000) idles a partition for a second each time the
    /// invoker falls behind and caps throughput near 16k records/s here; 10 keeps it busy.
    pub fetch_queue_backoff_ms: u32,
    /// Timeout of metadata, offset and commit requests.
    pub request_timeout: Duration,
}

/// Transport security and authentication to the brokers, as AWS offers them: no SASL without
/// TLS (AWS refuses `SASL_PLAINTEXT`, and so does kafka-esm), and the broker's certificate and
/// host name always verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Security {
    /// No TLS, no authentication.
    Plaintext,
    /// TLS with the server certificate and host name verified against `ca`; with `client`, the
    /// poller presents a client certificate (mTLS, `CLIENT_CERTIFICATE_TLS_AUTH`).
    Tls { ca: CaSource, client: Option<ClientCertificate> },
    /// SASL over verified TLS (`SASL_SSL`).
    SaslSsl { ca: CaSource, sasl: Sasl },
}

impl Security {
    /// A short description for logs: protocol and mechanism, never a credential.
    pub fn describe(&self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Tls { client: None, .. } => "SSL",
            Self::Tls { client: Some(_), .. } => "SSL with a client certificate",
            Self::SaslSsl { sasl, .. } => match sasl {
                Sasl::ScramSha256(_) => "SASL_SSL/SCRAM-SHA-256",
                Sasl::ScramSha512(_) => "SASL_SSL/SCRAM-SHA-512",
                Sasl::Plain(_) => "SASL_SSL/PLAIN",
                Sasl::MskIam(_) => "SASL_SSL/OAUTHBEARER (MSK IAM)",
            },
        }
    }
}

/// A SASL mechanism and its credentials.
#[derive(Debug, Clone)]
pub enum Sasl {
    /// `SASL_SCRAM_256_AUTH`.
    ScramSha256(UserPassword),
    /// `SASL_SCRAM_512_AUTH`.
    ScramSha512(UserPassword),
    /// `BASIC_AUTH` (self-managed clusters only, as in AWS).
    Plain(UserPassword),
    /// MSK IAM access control: OAUTHBEARER with a SigV4-signed token from the poller's role.
    MskIam(Arc<MskIamSigner>),
}

impl PartialEq for Sasl {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::ScramSha256(a), Self::ScramSha256(b))
            | (Self::ScramSha512(a), Self::ScramSha512(b))
            | (Self::Plain(a), Self::Plain(b)) => a == b,
            (Self::MskIam(a), Self::MskIam(b)) => Arc::ptr_eq(a, b) || a.region() == b.region(),
            _ => false,
        }
    }
}

impl Eq for Sasl {}

/// Which certificate authorities a TLS connection trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaSource {
    /// The operating system's roots (librdkafka probes the usual bundle locations).
    System,
    /// A PEM bundle, e.g. a private CA (from a Secrets Manager secret or a file).
    Pem(String),
}

/// Which side of an authentication failed, for the wording AWS uses in `LastProcessingResult`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthFailure {
    /// The broker refused the SASL credentials (wrong user or password, a refused IAM token).
    Sasl,
    /// The broker refused the client certificate, or wanted one and got none.
    ClientCertificateRejected,
    /// The client could not use the certificate or private key (not PEM, wrong password, the
    /// key does not match the certificate).
    ClientCertificateInvalid,
}

/// Why a client could not do what was asked, phrased for whoever must fix it. No variant ever
/// carries a credential: details come from librdkafka's messages, which name mechanisms, hosts
/// and TLS alerts, never passwords or keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaClientError {
    #[error(
        "cannot reach the Kafka brokers {servers}: {detail}. Check the bootstrap servers, the network path (VPC, security groups) and the TLS settings"
    )]
    Unreachable { servers: String, detail: String },
    #[error(
        "TLS handshake with {servers} failed: {detail}. The broker certificate must be valid for the host name and signed by a trusted CA (SERVER_ROOT_CA_CERTIFICATE)"
    )]
    TlsVerification { servers: String, detail: String },
    #[error("topic '{topic}' does not exist on {servers}. Create it, or fix Topics")]
    TopicNotFound { topic: String, servers: String },
    /// `sasl_denied`: the refusal came as a failed SASL authentication (MSK IAM without
    /// `kafka-cluster:Connect`), which AWS reports as "SASL authentication failed".
    #[error("the cluster refused access to {what}: {detail}")]
    Authorization { what: String, detail: String, sasl_denied: bool },
    #[error("authentication with {servers} failed: {detail}")]
    Authentication { servers: String, detail: String, failure: AuthFailure },
    #[error("invalid Kafka client configuration: {detail}")]
    Config { detail: String },
    #[error("Kafka error: {detail}")]
    Other { detail: String },
}

impl KafkaClientError {
    /// The mapping's `LastProcessingResult` for this failure: AWS's own wording for the
    /// authentication and authorization errors it documents, `PROBLEM: …` otherwise.
    pub fn last_processing_result(&self) -> String {
        match self {
            Self::Authentication { failure: AuthFailure::Sasl, .. } | Self::Authorization { sasl_denied: true, .. } => {
                "SASL authentication failed".into()
            }
            Self::Authentication { failure: AuthFailure::ClientCertificateRejected, .. } => {
                "Server failed to authenticate Lambda".into()
            }
            Self::Authentication { failure: AuthFailure::ClientCertificateInvalid, .. } => {
                "Provided certificate or private key is invalid".into()
            }
            Self::TlsVerification { .. } => "Lambda failed to authenticate server".into(),
            Self::Authorization { sasl_denied: false, .. } => "Cluster failed to authorize Lambda".into(),
            other => format!("PROBLEM: {other}"),
        }
    }

    /// Whether credentials from a secret were refused: the secret may have been rotated since
    /// it was read, so it is worth reading again before the mapping is stopped.
    pub const fn may_be_stale_credentials(&self) -> bool {
        matches!(self, Self::Authentication { .. } | Self::TlsVerification { .. })
    }
}

/// librdkafka callbacks: logs go to `tracing` (at DEBUG: a broker that is away makes librdkafka
/// repeat itself on every reconnect; the consumer reports the failure once, with this context)
/// tagged with the mapping. The latest client-level failure is kept so a failed request can say
/// *why*, and an authentication failure is kept apart: it ends the connection (see
/// [`classify_failure`]). MSK IAM tokens are made here, on librdkafka's request.
#[derive(Debug)]
pub struct EsmContext {
    mapping: Arc<str>,
    topic: Arc<str>,
    servers: Arc<str>,
    /// Which mechanism is configured, to read librdkafka's failures right.
    security: SecurityKind,
    iam: Option<Arc<MskIamSigner>>,
    last_error: Mutex<Option<String>>,
    auth_failure: Mutex<Option<KafkaClientError>>,
    /// Partition → its offsets, from the statistics callback.
    high_watermarks: Mutex<std::collections::HashMap<i32, Marks>>,
}

/// One partition's offsets, as librdkafka's statistics last reported them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Marks {
    /// The last stable offset (or the high watermark).
    end: i64,
    /// The next offset the client fetches (past transaction markers, which are never handed on).
    fetched_to: i64,
    /// One past the last record the client handed to the poller.
    handed_to: i64,
}

impl Marks {
    /// Records waiting after `next_offset` (the next to deliver). Once the client has fetched to
    /// the end and the poller has delivered all it was handed, nothing waits, even though a
    /// transaction's commit marker leaves the end one past the last record (review #25: the lag
    /// of a transactional topic never reached 0, so its pollers never scaled in).
    fn lag(self, next_offset: i64) -> Option<u64> {
        if self.end < 0 || next_offset < 0 {
            return None;
        }
        if self.fetched_to >= self.end && self.handed_to >= 0 && next_offset >= self.handed_to {
            return Some(0);
        }
        Some(u64::try_from(self.end.saturating_sub(next_offset)).unwrap_or(0))
    }
}

/// What [`classify_failure`] needs to know about the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SecurityKind {
    tls: bool,
    client_certificate: bool,
    sasl: bool,
    msk_iam: bool,
}

impl SecurityKind {
    fn of(security: &Security) -> Self {
        match security {
            Security::Plaintext => Self { tls: false, client_certificate: false, sasl: false, msk_iam: false },
            Security::Tls { client, .. } => {
                Self { tls: true, client_certificate: client.is_some(), sasl: false, msk_iam: false }
            }
            Security::SaslSsl { sasl, .. } => {
                Self { tls: true, client_certificate: false, sasl: true, msk_iam: matches!(sasl, Sasl::MskIam(_)) }
            }
        }
    }
}

impl EsmContext {
    /// The context of one client (a mapping's consumer, or a producer to a `kafka://` destination).
    fn new(mapping: &str, topic: &str, servers: &str, security: &Security) -> Self {
        Self {
            mapping: Arc::from(mapping),
            topic: Arc::from(topic),
            servers: Arc::from(servers),
            security: SecurityKind::of(security),
            iam: match security {
                Security::SaslSsl { sasl: Sasl::MskIam(signer), .. } => Some(signer.clone()),
                _ => None,
            },
            last_error: Mutex::new(None),
            auth_failure: Mutex::new(None),
            high_watermarks: Mutex::new(std::collections::HashMap::new()),
        }
    }

    fn take_failures(&self) -> (Option<String>, Option<KafkaClientError>) {
        (
            self.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take(),
            self.auth_failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take(),
        )
    }

    /// The authentication failure seen, if any, without clearing it.
    fn auth_failure(&self) -> Option<KafkaClientError> {
        self.auth_failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn record(&self, code: Option<RDKafkaErrorCode>, message: &str) {
        if let Some(failure) = classify_failure(self.security, &self.servers, code, message) {
            *self.auth_failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(failure);
        }
        *self.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(message.to_owned());
    }
}

/// Whether librdkafka's failure `message` (with error `code`, when it came as an error event)
/// means the credentials or certificates were refused, and how AWS names that.
///
/// librdkafka reports SASL failures with their own code (`Authentication`, or the broker's
/// `SaslAuthenticationFailed`); TLS failures only as text from OpenSSL (the error code is a
/// generic SSL or transport failure), so the certificate cases read OpenSSL's alert and verify
/// messages, which are stable across OpenSSL versions. Anything else is not an authentication
/// failure: a broker that is away, restarting or slow is retried.
fn classify_failure(
    security: SecurityKind,
    servers: &str,
    code: Option<RDKafkaErrorCode>,
    message: &str,
) -> Option<KafkaClientError> {
    let servers = servers.to_owned();
    let detail = message.to_owned();
    let lower = message.to_ascii_lowercase();
    if security.tls && lower.contains("certificate verify failed") {
        return Some(KafkaClientError::TlsVerification { servers, detail });
    }
    // TLS alerts the broker sends when it does not accept the client (no certificate, an
    // unknown CA, expired, revoked, …). OpenSSL writes them as "… alert <name>".
    const CLIENT_REJECTED: [&str; 7] = [
        "alert certificate required",
        "alert bad certificate",
        "alert unknown ca",
        "alert certificate expired",
        "alert certificate revoked",
        "alert certificate unknown",
        "alert unsupported certificate",
    ];
    // Alerts that name no certificate but, received during the handshake of a connection that
    // presents one, mean the broker could not verify it (a certificate whose issuer name matches
    // a trusted CA but whose signature does not: "decrypt error").
    const CLIENT_UNVERIFIED: [&str; 3] = ["alert decrypt error", "alert access denied", "alert handshake failure"];
    if security.tls
        && (CLIENT_REJECTED.iter().any(|alert| lower.contains(alert))
            || (security.client_certificate && CLIENT_UNVERIFIED.iter().any(|alert| lower.contains(alert))))
    {
        return Some(KafkaClientError::Authentication {
            servers,
            detail,
            failure: AuthFailure::ClientCertificateRejected,
        });
    }
    let sasl_code = matches!(code, Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed));
    if security.sasl && (sasl_code || lower.contains("sasl authentication error")) {
        // No token (the credential chain is failing right now) is not a refusal: retried.
        if lower.contains("oauthbearer token") && !lower.contains("sasl authentication error") {
            return None;
        }
        if security.msk_iam && lower.contains("access denied") {
            return Some(KafkaClientError::Authorization {
                what: "the cluster (kafka-cluster:Connect)".into(),
                detail: format!(
                    "{detail}. Allow kafka-cluster:Connect on the cluster (and DescribeGroup, AlterGroup, DescribeTopic, ReadData on the group and topic) in the poller's role"
                ),
                sasl_denied: true,
            });
        }
        return Some(KafkaClientError::Authentication { servers, detail, failure: AuthFailure::Sasl });
    }
    None
}

impl ClientContext for EsmContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                debug!(mapping = %self.mapping, facility = fac, "librdkafka: {message}");
                if fac == "FAIL" {
                    self.record(None, message);
                }
            }
            RDKafkaLogLevel::Warning | RDKafkaLogLevel::Notice => {
                debug!(mapping = %self.mapping, facility = fac, "librdkafka: {message}");
            }
            RDKafkaLogLevel::Info | RDKafkaLogLevel::Debug => {}
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        debug!(mapping = %self.mapping, error = %error, reason, "Kafka client error.");
        self.record(error.rdkafka_error_code(), reason);
    }

    fn stats(&self, statistics: rdkafka::Statistics) {
        let Some(topic) = statistics.topics.get(&*self.topic) else { return };
        let mut marks = self.high_watermarks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (&partition, p) in &topic.partitions {
            // The last stable offset: what a read_committed consumer (librdkafka's default) can
            // reach; the high watermark would count open transactions' records as lag forever.
            let end = if p.ls_offset >= 0 { p.ls_offset } else { p.hi_offset };
            if partition >= 0 && end >= 0 {
                marks.insert(partition, Marks { end, fetched_to: p.next_offset, handed_to: p.app_offset });
            }
        }
    }

    /// Called by librdkafka (on the thread serving the main queue) at start and at 80 % of the
    /// previous token's lifetime. Signing is local and quick; credentials are kept fresh by the
    /// signer in the background, so this never blocks.
    fn generate_oauth_token(&self, _config: Option<&str>) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        let signer = self.iam.as_ref().ok_or("OAUTHBEARER is only used for MSK IAM access control")?;
        let token = signer.token().inspect_err(|e| {
            warn!(mapping = %self.mapping, error = %e, "Cannot make an MSK IAM token; librdkafka will ask again.");
        })?;
        debug!(mapping = %self.mapping, expires_at_ms = token.expires_at_ms, "Made an MSK IAM token.");
        Ok(OAuthToken {
            token: token.token,
            principal_name: IAM_PRINCIPAL.to_owned(),
            lifetime_ms: token.expires_at_ms,
        })
    }
}

/// The principal librdkafka records with an OAUTHBEARER token; MSK identifies the caller from
/// the signed token, not from this name.
const IAM_PRINCIPAL: &str = "kafka-esm";

impl ConsumerContext for EsmContext {}

type EsmConsumer = StreamConsumer<EsmContext>;

/// A consumer for one mapping's topic.
#[derive(Clone)]
pub struct KafkaClient {
    consumer: Arc<EsmConsumer>,
    topic: Arc<str>,
    settings: Arc<KafkaSettings>,
}

impl std::fmt::Debug for KafkaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaClient").field("topic", &self.topic).field("group", &self.settings.group_id).finish()
    }
}

impl KafkaClient {
    /// Builds the client (no network traffic yet).
    ///
    /// # Errors
    /// librdkafka rejected the configuration.
    pub fn new(settings: KafkaSettings, topic: &str, mapping: &str) -> Result<Self, KafkaClientError> {
        let mut config = consumer_config(&settings, &format!("kafka-esm-{mapping}"));
        // High watermarks for lag (scaling decisions), every second.
        config.set("statistics.interval.ms", "1000");
        let context = EsmContext::new(mapping, topic, &settings.bootstrap_servers, &settings.security);
        let consumer: EsmConsumer =
            config.create_with_context(context).map_err(|e| creation_error(&settings.security, &e))?;
        Ok(Self { consumer: Arc::new(consumer), topic: Arc::from(topic), settings: Arc::new(settings) })
    }

    pub fn topic(&self) -> &Arc<str> {
        &self.topic
    }

    fn describe(&self, e: &KafkaError, what: &str) -> KafkaClientError {
        let servers = self.settings.bootstrap_servers.clone();
        let (last, auth_failure) = self.consumer.context().take_failures();
        let code = e.rdkafka_error_code();
        let detail = match &last {
            Some(reason) => format!("{e} ({reason})"),
            None => e.to_string(),
        };
        if let Some(failure) = auth_failure {
            return failure;
        }
        match code {
            Some(
                RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::GroupAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed,
            ) => KafkaClientError::Authorization { what: what.to_owned(), detail, sasl_denied: false },
            Some(RDKafkaErrorCode::SaslAuthenticationFailed | RDKafkaErrorCode::Authentication) => {
                KafkaClientError::Authentication { servers, detail, failure: AuthFailure::Sasl }
            }
            Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
                KafkaClientError::TopicNotFound { topic: self.topic.to_string(), servers }
            }
            Some(
                RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::Resolve,
            ) => KafkaClientError::Unreachable { servers, detail },
            _ => KafkaClientError::Other { detail: format!("{what}: {detail}") },
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&EsmConsumer) -> T + Send + 'static,
    ) -> Result<T, KafkaClientError> {
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || f(&consumer))
            .await
            .map_err(|e| KafkaClientError::Other { detail: format!("client task failed: {e}") })
    }

    /// The topic's partitions, from the brokers' metadata.
    ///
    /// # Errors
    /// Brokers unreachable, topic missing or not authorised.
    pub async fn partitions(&self) -> Result<Vec<i32>, KafkaClientError> {
        // librdkafka fails a metadata request at once when its only connection attempt was
        // refused, e.g. on the first address of a host name with several (`localhost` → ::1,
        // 127.0.0.1). Keep asking until the request timeout, as a single request would wait.
        let deadline = tokio::time::Instant::now() + self.settings.request_timeout;
        let metadata = loop {
            let topic = self.topic.clone();
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.blocking(move |c| c.fetch_metadata(Some(&topic), remaining)).await? {
                Ok(metadata) => break metadata,
                Err(e) if remaining > Duration::from_millis(200) && is_connection_error(&e) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(self.describe(&e, "metadata")),
            }
        };
        let Some(topic) = metadata.topics().iter().find(|t| t.name() == &*self.topic) else {
            return Err(KafkaClientError::TopicNotFound {
                topic: self.topic.to_string(),
                servers: self.settings.bootstrap_servers.clone(),
            });
        };
        if let Some(err) = topic.error() {
            let e = KafkaError::MetadataFetch(RDKafkaErrorCode::from(err));
            return Err(self.describe(&e, &format!("topic {}", self.topic)));
        }
        let mut partitions: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
        if partitions.is_empty() {
            return Err(KafkaClientError::TopicNotFound {
                topic: self.topic.to_string(),
                servers: self.settings.bootstrap_servers.clone(),
            });
        }
        partitions.sort_unstable();
        Ok(partitions)
    }

    /// `(low, high)` watermarks of a partition: the first offset and the next offset to be written.
    ///
    /// # Errors
    /// The request failed.
    pub async fn watermarks(&self, partition: i32) -> Result<(i64, i64), KafkaClientError> {
        let topic = self.topic.clone();
        let timeout = self.settings.request_timeout;
        self.blocking(move |c| c.fetch_watermarks(&topic, partition, timeout))
            .await?
            .map_err(|e| self.describe(&e, "watermarks"))
    }

    /// Where each partition starts: the committed offset when there is one, else the starting
    /// position resolved to a concrete offset (so it can be checkpointed at once and a restart
    /// never re-resolves `LATEST` past unread records).
    ///
    /// Returns `(start offsets, the subset that was resolved from the starting position)`.
    ///
    /// # Errors
    /// Offsets could not be read.
    pub async fn start_offsets(
        &self,
        committed: &BTreeMap<i32, Option<i64>>,
        position: StartingPosition,
        timestamp_ms: Option<i64>,
    ) -> Result<(BTreeMap<i32, i64>, BTreeMap<i32, i64>), KafkaClientError> {
        let mut start = BTreeMap::new();
        let mut resolved = BTreeMap::new();
        let fresh: Vec<i32> = committed.iter().filter(|(_, o)| !o.is_some_and(|o| o >= 0)).map(|(p, _)| *p).collect();
        let by_time = match (position, timestamp_ms) {
            (StartingPosition::AtTimestamp, Some(ts)) if !fresh.is_empty() => self.offsets_for_time(&fresh, ts).await?,
            _ => BTreeMap::new(),
        };
        for (&partition, &offset) in committed {
            if let Some(offset) = offset.filter(|o| *o >= 0) {
                start.insert(partition, offset);
                continue;
            }
            let watermarks = self.watermarks(partition).await?;
            let offset = resolve_start(position, watermarks, by_time.get(&partition).copied());
            start.insert(partition, offset);
            resolved.insert(partition, offset);
        }
        Ok((start, resolved))
    }

    async fn offsets_for_time(
        &self,
        partitions: &[i32],
        timestamp_ms: i64,
    ) -> Result<BTreeMap<i32, Offset>, KafkaClientError> {
        let mut tpl = TopicPartitionList::new();
        for &p in partitions {
            tpl.add_partition_offset(&self.topic, p, Offset::Offset(timestamp_ms))
                .map_err(|e| KafkaClientError::Other { detail: e.to_string() })?;
        }
        let timeout = self.settings.request_timeout;
        let result = self.blocking(move |c| c.offsets_for_times(tpl, timeout)).await?;
        let tpl = result.map_err(|e| self.describe(&e, "offsets for timestamp"))?;
        let mut out = BTreeMap::new();
        for e in tpl.elements_for_topic(&self.topic) {
            // librdkafka may report a failed partition inside a successful call: that is no
            // answer, not "no record at or after the time" (which would start at the end).
            if let Err(error) = e.error() {
                return Err(self.describe(&error, &format!("offsets for timestamp of partition {}", e.partition())));
            }
            out.insert(e.partition(), e.offset());
        }
        Ok(out)
    }

    /// Starts reading `partition` at `offset` and returns its record source. The partition's queue
    /// is split off before the partition is assigned, so none of its records can reach the main
    /// queue (the split marks the queue as forwarded by the application, which assignment leaves
    /// alone); other partitions keep running.
    ///
    /// # Errors
    /// librdkafka refused the assignment.
    pub fn open_partition(&self, partition: i32, offset: i64) -> Result<KafkaPartitionSource, KafkaClientError> {
        let queue = self
            .consumer
            .split_partition_queue(&self.topic, partition)
            .ok_or_else(|| KafkaClientError::Other { detail: format!("cannot split partition {partition}") })?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, partition, Offset::Offset(offset))
            .map_err(|e| KafkaClientError::Other { detail: e.to_string() })?;
        self.consumer.incremental_assign(&tpl).map_err(|e| self.describe(&e, "assign"))?;
        Ok(KafkaPartitionSource { queue, topic: self.topic.clone(), partition })
    }

    /// Starts reading every partition in `start` at its offset.
    ///
    /// # Errors
    /// librdkafka refused an assignment.
    pub fn assign(&self, start: &BTreeMap<i32, i64>) -> Result<Vec<KafkaPartitionSource>, KafkaClientError> {
        start.iter().map(|(&partition, &offset)| self.open_partition(partition, offset)).collect()
    }

    /// Stops reading `partition`; what librdkafka had fetched ahead for it is dropped.
    ///
    /// # Errors
    /// librdkafka refused the change.
    pub fn close_partition(&self, partition: i32) -> Result<(), KafkaClientError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, partition);
        self.consumer.incremental_unassign(&tpl).map_err(|e| self.describe(&e, "unassign"))
    }

    /// Records waiting in `partition` after `next_offset`, from the last fetch responses as
    /// librdkafka's statistics report them (no request is made).
    pub fn lag(&self, partition: i32, next_offset: i64) -> Option<u64> {
        let marks = *self
            .consumer
            .context()
            .high_watermarks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&partition)?;
        marks.lag(next_offset)
    }

    /// Serves the client's main queue (callbacks, errors, MSK IAM token requests) until it is
    /// dropped. Every record is read from a partition queue; one showing up here means the split
    /// raced a fetch, so this returns an error and the caller restarts the consumer from the
    /// committed offsets rather than skip a record. It also returns when the brokers refuse the
    /// client's credentials or certificates (or the client refuses the broker's): retrying the
    /// same credentials cannot succeed, and librdkafka would otherwise retry them forever.
    pub async fn serve_main_queue(&self) -> KafkaClientError {
        loop {
            match self.consumer.recv().await {
                Ok(message) => {
                    error!(
                        topic = message.topic(),
                        partition = message.partition(),
                        offset = message.offset(),
                        "Record arrived on the main queue; restarting the consumer from its committed offsets."
                    );
                    return KafkaClientError::Other { detail: "record routed to the main queue".into() };
                }
                Err(e) => {
                    if let Some(failure) = self.consumer.context().auth_failure() {
                        return failure;
                    }
                    info!(error = %e, "Kafka consumer error.");
                }
            }
        }
    }

    /// The checkpoint seam over this client's consumer group.
    pub fn checkpoint(&self) -> KafkaCheckpoint {
        KafkaCheckpoint { client: self.clone() }
    }
}

/// Where a partition without a committed offset starts, from its `(low, high)` watermarks and,
/// for `AT_TIMESTAMP`, the broker's answer to a timestamp lookup: the earliest offset whose
/// record is at or after the time; none (Kafka answers -1, librdkafka `Offset::End`) when every
/// record is older, which starts at the end, as Kafka's `auto.offset.reset` by time does.
fn resolve_start(position: StartingPosition, (low, high): (i64, i64), by_time: Option<Offset>) -> i64 {
    match position {
        StartingPosition::TrimHorizon => low,
        StartingPosition::Latest => high,
        StartingPosition::AtTimestamp => match by_time {
            Some(Offset::Offset(o)) if o >= 0 => o.clamp(low, high),
            _ => high,
        },
    }
}

/// The fetch-ahead buffer of each partition (`queued.max.messages.kbytes`) when a client's
/// `budget_kbytes` is shared by `partitions`: an equal share, at most `per_partition_kbytes`, at
/// least 64 KiB (below that a partition fetches too little at a time to keep up).
pub fn fetch_share_kbytes(budget_kbytes: u32, partitions: usize, per_partition_kbytes: u32) -> u32 {
    let partitions = u32::try_from(partitions.max(1)).unwrap_or(u32::MAX);
    (budget_kbytes / partitions).clamp(64.min(per_partition_kbytes), per_partition_kbytes)
}

/// The librdkafka settings of every consumer kafka-esm creates (the benchmark's raw reader uses
/// them too, so the two measure the same client).
pub fn consumer_config(settings: &KafkaSettings, client_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &settings.bootstrap_servers)
        .set("group.id", &settings.group_id)
        .set("client.id", client_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("allow.auto.create.topics", "false")
        // Out-of-range committed offsets fall back to the start of the log; the initial
        // position is resolved explicitly (see `start_offsets`), never through this.
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", settings.fetch_wait_max_ms.to_string())
        .set("queued.max.messages.kbytes", settings.queued_max_kbytes.to_string())
        // One fetch adds at most this much to a partition's buffer (a record batch larger than it
        // still comes whole), so a small buffer is not overshot by librdkafka's default 1 MiB.
        .set("max.partition.fetch.bytes", (settings.queued_max_kbytes.min(1024) * 1024).to_string())
        .set("fetch.queue.backoff.ms", settings.fetch_queue_backoff_ms.to_string())
        .set("socket.keepalive.enable", "true")
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "10000")
        // Never subscribed, so no assignor runs; this only lets the incremental assignment calls
        // through whatever librdkafka infers.
        .set("partition.assignment.strategy", "cooperative-sticky");
    apply_security(&mut config, &settings.security);
    config
}

/// The `security.protocol`, TLS and SASL settings of `security`.
fn apply_security(config: &mut ClientConfig, security: &Security) {
    let trust = |config: &mut ClientConfig, ca: &CaSource| {
        // Host names are verified too (librdkafka's default since 2.0; set so it stays).
        config.set("ssl.endpoint.identification.algorithm", "https");
        match ca {
            CaSource::System => config.set("ssl.ca.location", "probe"),
            CaSource::Pem(pem) => config.set("ssl.ca.pem", pem),
        };
    };
    match security {
        Security::Plaintext => {
            config.set("security.protocol", "plaintext");
        }
        Security::Tls { ca, client } => {
            config.set("security.protocol", "ssl");
            trust(config, ca);
            if let Some(client) = client {
                config
                    .set("ssl.certificate.pem", client.certificate_pem.expose())
                    .set("ssl.key.pem", client.private_key_pem.expose());
                if let Some(password) = &client.private_key_password {
                    config.set("ssl.key.password", password.expose());
                }
            }
        }
        Security::SaslSsl { ca, sasl } => {
            config.set("security.protocol", "sasl_ssl");
            trust(config, ca);
            let (mechanism, credentials) = match sasl {
                Sasl::ScramSha256(c) => ("SCRAM-SHA-256", Some(c)),
                Sasl::ScramSha512(c) => ("SCRAM-SHA-512", Some(c)),
                Sasl::Plain(c) => ("PLAIN", Some(c)),
                // Tokens come from `EsmContext::generate_oauth_token`.
                Sasl::MskIam(_) => ("OAUTHBEARER", None),
            };
            config.set("sasl.mechanism", mechanism);
            if let Some(c) = credentials {
                config.set("sasl.username", c.username.expose()).set("sasl.password", c.password.expose());
            }
        }
    }
}

/// Why librdkafka would not create the client. Configuration errors name the key, never its
/// value (rdkafka's own message would print the value, e.g. a private key). A certificate or key
/// librdkafka cannot load is reported as AWS does ("Provided certificate or private key is
/// invalid"); librdkafka says which one only in its text ("ssl.key.pem failed: …").
fn creation_error(security: &Security, e: &KafkaError) -> KafkaClientError {
    let detail = match e {
        KafkaError::ClientConfig(_, description, key, _value) => format!("{key}: {description}"),
        other => other.to_string(),
    };
    let lower = detail.to_ascii_lowercase();
    let client_certificate = matches!(security, Security::Tls { client: Some(_), .. });
    if client_certificate
        && ["ssl.key", "ssl.certificate", "private key", "certificate.pem"].iter().any(|k| lower.contains(k))
    {
        return KafkaClientError::Authentication {
            servers: String::new(),
            detail,
            failure: AuthFailure::ClientCertificateInvalid,
        };
    }
    KafkaClientError::Config { detail }
}

fn is_connection_error(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::Resolve)
    )
}

/// One partition's records from its own librdkafka queue.
pub struct KafkaPartitionSource {
    queue: StreamPartitionQueue<EsmContext>,
    topic: Arc<str>,
    partition: i32,
}

impl std::fmt::Debug for KafkaPartitionSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaPartitionSource").field("topic", &self.topic).field("partition", &self.partition).finish()
    }
}

impl KafkaPartitionSource {
    pub const fn partition(&self) -> i32 {
        self.partition
    }
}

impl RecordSource for KafkaPartitionSource {
    async fn next_record(&mut self) -> Option<Result<KafkaRecord, SourceError>> {
        Some(match self.queue.recv().await {
            Ok(message) => Ok(to_record(&message, &self.topic)),
            Err(e) => Err(self.source_error(&e)),
        })
    }

    /// Encodes the record from librdkafka's buffer in place: no owned copy of key, value and
    /// headers first.
    async fn next_encoded(&mut self, encoder: &RecordEncoder) -> Option<Result<EncodedRecord, SourceError>> {
        Some(match self.queue.recv().await {
            Ok(message) => {
                let (timestamp_ms, timestamp_type) = timestamp(&message);
                let headers = message.headers();
                let count = headers.map_or(0, Headers::count);
                let view = RecordView {
                    partition: message.partition(),
                    offset: message.offset(),
                    timestamp_ms,
                    timestamp_type,
                    key: message.key(),
                    value: message.payload(),
                    headers: (0..count).filter_map(move |i| header_at(headers?, i)),
                };
                Ok(encoder.encode(view))
            }
            Err(e) => Err(self.source_error(&e)),
        })
    }
}

impl KafkaPartitionSource {
    fn source_error(&self, e: &KafkaError) -> SourceError {
        let partition = self.partition;
        let message = e.to_string();
        match e.rdkafka_error_code() {
            Some(RDKafkaErrorCode::TopicAuthorizationFailed | RDKafkaErrorCode::GroupAuthorizationFailed) => {
                SourceError::Fatal { partition, message, stop: Some(StopReason::EventSourceAuthzError) }
            }
            Some(RDKafkaErrorCode::SaslAuthenticationFailed) => {
                SourceError::Fatal { partition, message, stop: Some(StopReason::EventSourceAuthnError) }
            }
            // The topic or partition went away: restart from the committed offset (the consumer
            // then finds out what is left).
            Some(RDKafkaErrorCode::UnknownTopicOrPartition) => SourceError::Fatal { partition, message, stop: None },
            _ => SourceError::Transient { partition, message },
        }
    }
}

fn timestamp(message: &BorrowedMessage<'_>) -> (i64, TimestampType) {
    match message.timestamp() {
        Timestamp::CreateTime(t) => (t, TimestampType::CreateTime),
        Timestamp::LogAppendTime(t) => (t, TimestampType::LogAppendTime),
        Timestamp::NotAvailable => (-1, TimestampType::NoTimestampType),
    }
}

fn to_record(message: &BorrowedMessage<'_>, topic: &Arc<str>) -> KafkaRecord {
    let (timestamp_ms, timestamp_type) = timestamp(message);
    let headers = message.headers().map(headers_of).unwrap_or_default();
    KafkaRecord {
        topic: topic.clone(),
        partition: message.partition(),
        offset: message.offset(),
        timestamp_ms,
        timestamp_type,
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers,
    }
}

/// A record's headers. rdkafka 0.39 reads a header key as UTF-8 and panics when it is not (and
/// offers no byte API outside `unsafe`), so each header is read on its own, catching that panic:
/// a header whose key is not UTF-8 is delivered as key U+FFFD with no value, and the record goes
/// on instead of stopping its partition.
fn headers_of(headers: &rdkafka::message::BorrowedHeaders) -> Vec<Header> {
    (0..headers.count())
        .filter_map(|i| header_at(headers, i))
        .map(|(key, value)| Header { key: key.to_owned(), value: value.map(<[u8]>::to_vec) })
        .collect()
}

/// Header `i`, borrowed from librdkafka's buffer (see [`headers_of`] for keys that are not UTF-8).
fn header_at(headers: &rdkafka::message::BorrowedHeaders, i: usize) -> Option<(&str, Option<&[u8]>)> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| headers.try_get(i))) {
        Ok(header) => header.map(|h| (h.key, h.value)),
        Err(_) => {
            debug!(index = i, "A record header key is not UTF-8; delivered as U+FFFD without its value.");
            Some(("\u{FFFD}", None))
        }
    }
}

/// Group offsets in Kafka (OffsetFetch / OffsetCommit as a simple, unsubscribed group member).
#[derive(Debug, Clone)]
pub struct KafkaCheckpoint {
    client: KafkaClient,
}

impl Checkpoint for KafkaCheckpoint {
    async fn committed(&self, partitions: &[i32]) -> Result<BTreeMap<i32, Option<i64>>, CheckpointError> {
        let mut tpl = TopicPartitionList::new();
        for &p in partitions {
            tpl.add_partition(&self.client.topic, p);
        }
        let timeout = self.client.settings.request_timeout;
        let result = self
            .client
            .blocking(move |c| c.committed_offsets(tpl, timeout))
            .await
            .map_err(|e| CheckpointError { message: e.to_string() })?;
        let tpl = result
            .map_err(|e| CheckpointError { message: self.client.describe(&e, "committed offsets").to_string() })?;
        let mut out: BTreeMap<i32, Option<i64>> = partitions.iter().map(|p| (*p, None)).collect();
        for elem in tpl.elements_for_topic(&self.client.topic) {
            // A failed partition inside a successful call is no answer: taking it for "no commit"
            // would re-resolve the starting position (LATEST: past unread records).
            if let Err(e) = elem.error() {
                return Err(CheckpointError {
                    message: self
                        .client
                        .describe(&e, &format!("committed offset of partition {}", elem.partition()))
                        .to_string(),
                });
            }
            if let Offset::Offset(o) = elem.offset() {
                out.insert(elem.partition(), Some(o));
            }
        }
        Ok(out)
    }

    async fn commit(&self, offsets: &BTreeMap<i32, i64>) -> Result<(), CheckpointError> {
        let mut tpl = TopicPartitionList::new();
        for (&p, &o) in offsets {
            tpl.add_partition_offset(&self.client.topic, p, Offset::Offset(o))
                .map_err(|e| CheckpointError { message: e.to_string() })?;
        }
        let result = self
            .client
            .blocking(move |c| c.commit(&tpl, CommitMode::Sync))
            .await
            .map_err(|e| CheckpointError { message: e.to_string() })?;
        result.map_err(|e| CheckpointError { message: self.client.describe(&e, "commit").to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starting_positions_resolve_as_kafka_answers() {
        use StartingPosition::*;
        let marks = (5, 20);
        assert_eq!(resolve_start(TrimHorizon, marks, None), 5);
        assert_eq!(resolve_start(Latest, marks, None), 20);
        // AT_TIMESTAMP: the first offset at or after the time ...
        assert_eq!(resolve_start(AtTimestamp, marks, Some(Offset::Offset(12))), 12);
        // ... before the first record: the earliest one still there ...
        assert_eq!(resolve_start(AtTimestamp, marks, Some(Offset::Offset(0))), 5);
        // ... after the last record (Kafka answers -1): the end, nothing replayed.
        assert_eq!(resolve_start(AtTimestamp, marks, Some(Offset::End)), 20);
        assert_eq!(resolve_start(AtTimestamp, marks, Some(Offset::Offset(-1))), 20);
        assert_eq!(resolve_start(AtTimestamp, marks, None), 20);
    }

    /// Review #25: a transaction's commit marker (offset 10 here, after records 0–9) leaves the
    /// last stable offset at 11 and the poller at 10: the lag was 1 forever.
    #[test]
    fn lag_is_zero_once_everything_fetched_was_delivered_even_past_a_transaction_marker() {
        let marks = |end, fetched_to, handed_to| Marks { end, fetched_to, handed_to };
        // Records 0–9, the marker at 10: fetched past it, 0–9 handed on and delivered.
        assert_eq!(marks(11, 11, 10).lag(10), Some(0));
        // Not all delivered yet: what remains counts.
        assert_eq!(marks(11, 11, 10).lag(7), Some(4));
        // Not fetched to the end yet (records may follow the gap): end - position.
        assert_eq!(marks(11, 8, 8).lag(8), Some(3));
        // An ordinary topic: end - position.
        assert_eq!(marks(20, 20, 20).lag(20), Some(0));
        assert_eq!(marks(20, 15, 15).lag(12), Some(8));
        // Nothing known yet.
        assert_eq!(marks(-1, -1, -1).lag(0), None);
        assert_eq!(marks(20, 20, -1).lag(-1), None);
    }

    #[test]
    fn the_fetch_budget_is_shared_by_the_partitions() {
        // 16 MiB over 8 partitions: each may use its full 2 MiB.
        assert_eq!(fetch_share_kbytes(16_384, 8, 2048), 2048);
        assert_eq!(fetch_share_kbytes(16_384, 100, 2048), 163);
        assert_eq!(fetch_share_kbytes(16_384, 512, 2048), 64);
        // Never below 64 KiB (unless the per-partition setting itself is lower), never above it.
        assert_eq!(fetch_share_kbytes(1024, 1000, 2048), 64);
        assert_eq!(fetch_share_kbytes(1024, 1000, 16), 16);
        assert_eq!(fetch_share_kbytes(16_384, 0, 2048), 2048);
        let small = consumer_config(&KafkaSettings { queued_max_kbytes: 163, ..settings(Security::Plaintext) }, "c");
        assert_eq!(small.get("queued.max.messages.kbytes"), Some("163"));
        assert_eq!(small.get("max.partition.fetch.bytes"), Some("166912"));
        let large = consumer_config(&settings(Security::Plaintext), "c");
        assert_eq!(large.get("max.partition.fetch.bytes"), Some("1048576"));
    }

    fn settings(security: Security) -> KafkaSettings {
        KafkaSettings {
            bootstrap_servers: "b-1:9096".into(),
            group_id: "g".into(),
            security,
            fetch_wait_max_ms: 500,
            queued_max_kbytes: 2048,
            fetch_queue_backoff_ms: 10,
            request_timeout: Duration::from_secs(10),
        }
    }

    fn user(password: &str) -> UserPassword {
        UserPassword { username: Secret::new("alice"), password: Secret::new(password) }
    }

    #[test]
    fn each_mechanism_configures_librdkafka_and_verifies_the_broker() {
        let scram = consumer_config(
            &settings(Security::SaslSsl { ca: CaSource::System, sasl: Sasl::ScramSha512(user("pw-1")) }),
            "c",
        );
        assert_eq!(scram.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(scram.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!((scram.get("sasl.username"), scram.get("sasl.password")), (Some("alice"), Some("pw-1")));
        assert_eq!(scram.get("ssl.endpoint.identification.algorithm"), Some("https"));
        assert_eq!(scram.get("ssl.ca.location"), Some("probe"));

        let plain = consumer_config(
            &settings(Security::SaslSsl { ca: CaSource::Pem("PEM".into()), sasl: Sasl::Plain(user("pw")) }),
            "c",
        );
        assert_eq!((plain.get("sasl.mechanism"), plain.get("ssl.ca.pem")), (Some("PLAIN"), Some("PEM")));

        let client = ClientCertificate {
            certificate_pem: Secret::new("CERT"),
            private_key_pem: Secret::new("KEY"),
            private_key_password: Some(Secret::new("KEYPW")),
        };
        let mtls = consumer_config(&settings(Security::Tls { ca: CaSource::System, client: Some(client) }), "c");
        assert_eq!(mtls.get("security.protocol"), Some("ssl"));
        assert_eq!(
            (mtls.get("ssl.certificate.pem"), mtls.get("ssl.key.pem"), mtls.get("ssl.key.password")),
            (Some("CERT"), Some("KEY"), Some("KEYPW"))
        );
        assert_eq!(mtls.get("sasl.mechanism"), None);

        let provider = aws_credential_types::provider::SharedCredentialsProvider::new(
            aws_credential_types::Credentials::new("AKID", "SECRET", None, None, "test"),
        );
        let iam =
            Security::SaslSsl { ca: CaSource::System, sasl: Sasl::MskIam(MskIamSigner::new("eu-west-1", provider)) };
        let config = consumer_config(&settings(iam), "c");
        assert_eq!(
            (config.get("security.protocol"), config.get("sasl.mechanism")),
            (Some("sasl_ssl"), Some("OAUTHBEARER"))
        );
        assert_eq!(config.get("sasl.password"), None);
        assert_eq!(consumer_config(&settings(Security::Plaintext), "c").get("security.protocol"), Some("plaintext"));
    }

    #[test]
    fn settings_never_print_credentials() {
        let client = ClientCertificate {
            certificate_pem: Secret::new("-----BEGIN CERTIFICATE-----"),
            private_key_pem: Secret::new("-----BEGIN PRIVATE KEY-----"),
            private_key_password: Some(Secret::new("key-password")),
        };
        for security in [
            Security::SaslSsl { ca: CaSource::System, sasl: Sasl::ScramSha256(user("hunter2")) },
            Security::Tls { ca: CaSource::System, client: Some(client) },
        ] {
            let shown = format!("{:?} {}", settings(security.clone()), security.describe());
            for secret in ["hunter2", "alice", "PRIVATE KEY", "key-password"] {
                assert!(!shown.contains(secret), "{secret} in {shown}");
            }
        }
    }

    const SCRAM: SecurityKind = SecurityKind { tls: true, client_certificate: false, sasl: true, msk_iam: false };
    const IAM: SecurityKind = SecurityKind { tls: true, client_certificate: false, sasl: true, msk_iam: true };
    const MTLS: SecurityKind = SecurityKind { tls: true, client_certificate: true, sasl: false, msk_iam: false };

    #[test]
    fn refusals_are_named_as_aws_names_them_and_outages_are_not_refusals() {
        let sasl = classify_failure(
            SCRAM,
            "b:9096",
            Some(RDKafkaErrorCode::Authentication),
            "sasl_ssl://b:9096/bootstrap: SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512 (after 12ms in state AUTH_REQ)",
        )
        .expect("a refusal");
        assert_eq!(sasl.last_processing_result(), "SASL authentication failed");
        assert!(sasl.may_be_stale_credentials());
        assert_eq!(
            super::kafka_disposition(&sasl),
            crate::delivery::policy::Disposition::Stop(crate::delivery::policy::StopReason::EventSourceAuthnError)
        );

        let denied = classify_failure(
            IAM,
            "b:9098",
            Some(RDKafkaErrorCode::Authentication),
            "SASL authentication error: SaslAuthenticateRequest failed: [7a2c]: Access denied (after 5ms in state AUTH_REQ)",
        )
        .expect("a refusal");
        assert!(matches!(denied, KafkaClientError::Authorization { sasl_denied: true, .. }));
        assert_eq!(denied.last_processing_result(), "SASL authentication failed");
        assert_eq!(
            super::kafka_disposition(&denied),
            crate::delivery::policy::Disposition::Stop(crate::delivery::policy::StopReason::EventSourceAuthzError)
        );

        let server = classify_failure(
            MTLS,
            "b:9094",
            Some(RDKafkaErrorCode::SSL),
            "ssl://b:9094/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: broker certificate could not be verified",
        )
        .expect("a refusal");
        assert_eq!(server.last_processing_result(), "Lambda failed to authenticate server");

        for alert in [
            "tlsv13 alert certificate required",
            "sslv3 alert bad certificate",
            "tlsv1 alert unknown ca",
            "sslv3 alert certificate expired",
        ] {
            let rejected = classify_failure(
                MTLS,
                "b:9094",
                Some(RDKafkaErrorCode::SSL),
                &format!("SSL transport error: error:0A00045C:SSL routines::{alert}: SSL alert number 116"),
            )
            .expect("a refusal");
            assert_eq!(rejected.last_processing_result(), "Server failed to authenticate Lambda", "{alert}");
        }

        for outage in [
            (
                Some(RDKafkaErrorCode::BrokerTransportFailure),
                "Connect to ipv4#127.0.0.1:9096 failed: Connection refused",
            ),
            (Some(RDKafkaErrorCode::AllBrokersDown), "1/1 brokers are down"),
            (Some(RDKafkaErrorCode::Authentication), "Failed to acquire SASL OAUTHBEARER token: no credentials"),
        ] {
            assert_eq!(classify_failure(IAM, "b", outage.0, outage.1), None, "{outage:?}");
        }
        // A decrypt error without a client certificate is not about one.
        assert_eq!(classify_failure(SCRAM, "b", Some(RDKafkaErrorCode::SSL), "tlsv1 alert decrypt error"), None);
        // SASL codes mean nothing to a connection without SASL.
        assert_eq!(classify_failure(MTLS, "b", Some(RDKafkaErrorCode::Authentication), "x"), None);
    }

    #[test]
    fn unusable_certificates_and_keys_are_named_and_config_errors_never_echo_values() {
        let client = ClientCertificate {
            certificate_pem: Secret::new("CERT"),
            private_key_pem: Secret::new("not a key"),
            private_key_password: None,
        };
        let mtls = Security::Tls { ca: CaSource::System, client: Some(client) };
        let e = creation_error(&mtls, &KafkaError::ClientCreation("ssl.key.pem failed: not in PEM format?".into()));
        assert_eq!(e.last_processing_result(), "Provided certificate or private key is invalid");
        let e = creation_error(
            &Security::Plaintext,
            &KafkaError::ClientConfig(
                rdkafka::types::RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
                "Invalid value".into(),
                "sasl.password".into(),
                "hunter2".into(),
            ),
        );
        assert!(
            matches!(&e, KafkaClientError::Config { detail } if detail.contains("sasl.password") && !detail.contains("hunter2")),
            "{e}"
        );
    }
}

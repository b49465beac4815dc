//! The Kafka client: librdkafka (through `rdkafka`) with manual partition assignment and
//! consumer-group offset commits, no group rebalancing.
//!
//! One [`KafkaClient`] serves one mapping's topic in one poller. It resolves where each partition
//! starts (the group's committed offset, else the mapping's `StartingPosition`) and adds or removes
//! partitions one at a time as the poller's leases come and go (incremental assignment), each with
//! its own queue, so partitions are read and invoked in parallel while librdkafka keeps fetching
//! ahead into a bounded buffer (`queued.max.messages.kbytes` per partition). It implements the
//! [`RecordSource`] and [`Checkpoint`] seams.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, Timestamp, TopicPartitionList};
use tracing::{debug, error, info};

mod connector;

pub use connector::{KafkaConnector, KafkaMappingClient, kafka_disposition};

use crate::delivery::checkpoint::{Checkpoint, CheckpointError};
use crate::delivery::policy::StopReason;
use crate::delivery::record::{Header, KafkaRecord, RecordSource, SourceError, TimestampType};
use crate::model::mapping::StartingPosition;

/// How a client connects and how much it buffers.
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

/// Transport security to the brokers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Security {
    Plaintext,
    /// TLS with the server certificate and host name verified against `ca`.
    Tls {
        ca: CaSource,
    },
}

/// Which certificate authorities a TLS connection trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaSource {
    /// The operating system's roots (librdkafka probes the usual bundle locations).
    System,
    /// A PEM bundle, e.g. a private CA (from a Secrets Manager secret or a file).
    Pem(String),
}

/// Why a client could not do what was asked, phrased for whoever must fix it.
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
    #[error("the cluster refused access to {what}: {detail}")]
    Authorization { what: String, detail: String },
    #[error("authentication with {servers} failed: {detail}")]
    Authentication { servers: String, detail: String },
    #[error("invalid Kafka client configuration: {detail}")]
    Config { detail: String },
    #[error("Kafka error: {detail}")]
    Other { detail: String },
}

/// librdkafka callbacks: logs go to `tracing` (at DEBUG: a broker that is away makes librdkafka
/// repeat itself on every reconnect; the consumer reports the failure once, with this context)
/// tagged with the mapping. The latest client-level failure is kept so a failed request can say
/// *why*, and a failed certificate verification is kept apart: it only shows up here.
#[derive(Debug)]
pub struct EsmContext {
    mapping: Arc<str>,
    topic: Arc<str>,
    last_error: Mutex<Option<String>>,
    tls_verify_failure: Mutex<Option<String>>,
    /// Partition → high watermark, from the statistics callback.
    high_watermarks: Mutex<std::collections::HashMap<i32, i64>>,
}

impl EsmContext {
    fn take_failures(&self) -> (Option<String>, Option<String>) {
        let lock = |m: &Mutex<Option<String>>| m.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        (lock(&self.last_error), lock(&self.tls_verify_failure))
    }

    fn record(&self, message: &str) {
        let set = |m: &Mutex<Option<String>>| {
            *m.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(message.to_owned());
        };
        if message.contains("certificate verify failed") {
            set(&self.tls_verify_failure);
        }
        set(&self.last_error);
    }
}

impl ClientContext for EsmContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                debug!(mapping = %self.mapping, facility = fac, "librdkafka: {message}");
                if fac == "FAIL" {
                    self.record(message);
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
        self.record(reason);
    }

    fn stats(&self, statistics: rdkafka::Statistics) {
        let Some(topic) = statistics.topics.get(&*self.topic) else { return };
        let mut marks = self.high_watermarks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (&partition, p) in &topic.partitions {
            if partition >= 0 && p.hi_offset >= 0 {
                marks.insert(partition, p.hi_offset);
            }
        }
    }
}

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
        let context = EsmContext {
            mapping: Arc::from(mapping),
            topic: Arc::from(topic),
            last_error: Mutex::new(None),
            tls_verify_failure: Mutex::new(None),
            high_watermarks: Mutex::new(std::collections::HashMap::new()),
        };
        let consumer: EsmConsumer =
            config.create_with_context(context).map_err(|e| KafkaClientError::Config { detail: e.to_string() })?;
        Ok(Self { consumer: Arc::new(consumer), topic: Arc::from(topic), settings: Arc::new(settings) })
    }

    pub fn topic(&self) -> &Arc<str> {
        &self.topic
    }

    fn describe(&self, e: &KafkaError, what: &str) -> KafkaClientError {
        let servers = self.settings.bootstrap_servers.clone();
        let (last, tls_failure) = self.consumer.context().take_failures();
        let code = e.rdkafka_error_code();
        let detail = match &last {
            Some(reason) => format!("{e} ({reason})"),
            None => e.to_string(),
        };
        if let Some(reason) = tls_failure {
            return KafkaClientError::TlsVerification { servers, detail: reason };
        }
        match code {
            Some(
                RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::GroupAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed,
            ) => KafkaClientError::Authorization { what: what.to_owned(), detail },
            Some(RDKafkaErrorCode::SaslAuthenticationFailed | RDKafkaErrorCode::Authentication) => {
                KafkaClientError::Authentication { servers, detail }
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
            let (low, high) = self.watermarks(partition).await?;
            let offset = match position {
                StartingPosition::TrimHorizon => low,
                StartingPosition::Latest => high,
                // No record at or after the timestamp: start at the end.
                StartingPosition::AtTimestamp => by_time.get(&partition).copied().filter(|o| *o >= 0).unwrap_or(high),
            };
            start.insert(partition, offset);
            resolved.insert(partition, offset);
        }
        Ok((start, resolved))
    }

    async fn offsets_for_time(
        &self,
        partitions: &[i32],
        timestamp_ms: i64,
    ) -> Result<BTreeMap<i32, i64>, KafkaClientError> {
        let mut tpl = TopicPartitionList::new();
        for &p in partitions {
            tpl.add_partition_offset(&self.topic, p, Offset::Offset(timestamp_ms))
                .map_err(|e| KafkaClientError::Other { detail: e.to_string() })?;
        }
        let timeout = self.settings.request_timeout;
        let result = self.blocking(move |c| c.offsets_for_times(tpl, timeout)).await?;
        let tpl = result.map_err(|e| self.describe(&e, "offsets for timestamp"))?;
        Ok(tpl
            .elements_for_topic(&self.topic)
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect())
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

    /// Records waiting in `partition` after `next_offset`, from the high watermark of the last
    /// fetch responses as librdkafka's statistics report it (no request is made).
    pub fn lag(&self, partition: i32, next_offset: i64) -> Option<u64> {
        let high = *self
            .consumer
            .context()
            .high_watermarks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&partition)?;
        (high >= 0 && next_offset >= 0).then(|| u64::try_from(high.saturating_sub(next_offset)).unwrap_or(0))
    }

    /// Serves the client's main queue (callbacks, errors) until it is dropped. Every record is
    /// read from a partition queue; one showing up here means the split raced a fetch, so this
    /// returns an error and the caller restarts the consumer from the committed offsets rather
    /// than skip a record.
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
        .set("fetch.queue.backoff.ms", settings.fetch_queue_backoff_ms.to_string())
        .set("socket.keepalive.enable", "true")
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "10000")
        // Never subscribed, so no assignor runs; this only lets the incremental assignment calls
        // through whatever librdkafka infers.
        .set("partition.assignment.strategy", "cooperative-sticky");
    match &settings.security {
        Security::Plaintext => {
            config.set("security.protocol", "plaintext");
        }
        Security::Tls { ca } => {
            config.set("security.protocol", "ssl").set("ssl.endpoint.identification.algorithm", "https");
            match ca {
                CaSource::System => config.set("ssl.ca.location", "probe"),
                CaSource::Pem(pem) => config.set("ssl.ca.pem", pem),
            };
        }
    }
    config
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
        let partition = self.partition;
        Some(match self.queue.recv().await {
            Ok(message) => Ok(to_record(&message, &self.topic)),
            Err(e) => {
                let message = e.to_string();
                match e.rdkafka_error_code() {
                    Some(RDKafkaErrorCode::TopicAuthorizationFailed | RDKafkaErrorCode::GroupAuthorizationFailed) => {
                        Err(SourceError::Fatal { partition, message, stop: Some(StopReason::EventSourceAuthzError) })
                    }
                    Some(RDKafkaErrorCode::SaslAuthenticationFailed) => {
                        Err(SourceError::Fatal { partition, message, stop: Some(StopReason::EventSourceAuthnError) })
                    }
                    // The topic or partition went away: restart from the committed offset (the
                    // consumer then finds out what is left).
                    Some(RDKafkaErrorCode::UnknownTopicOrPartition) => {
                        Err(SourceError::Fatal { partition, message, stop: None })
                    }
                    _ => Err(SourceError::Transient { partition, message }),
                }
            }
        })
    }
}

fn to_record(message: &BorrowedMessage<'_>, topic: &Arc<str>) -> KafkaRecord {
    let (timestamp_ms, timestamp_type) = match message.timestamp() {
        Timestamp::CreateTime(t) => (t, TimestampType::CreateTime),
        Timestamp::LogAppendTime(t) => (t, TimestampType::LogAppendTime),
        Timestamp::NotAvailable => (-1, TimestampType::NoTimestampType),
    };
    let headers = message
        .headers()
        .map(|h| h.iter().map(|h| Header { key: h.key.to_owned(), value: h.value.map(<[u8]>::to_vec) }).collect())
        .unwrap_or_default();
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

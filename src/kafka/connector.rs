//! The librdkafka side of [`crate::coordination::connector`]: resolves the mapping's cluster
//! ([`super::cluster`]), builds a [`KafkaClient`] for its topic and classifies its errors.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::watch;
use tracing::debug;

use super::cluster::{AuthRetry, ClusterResolver, ResolveError};
use super::{KafkaCheckpoint, KafkaClient, KafkaClientError, KafkaPartitionSource, KafkaSettings};
use crate::config::KafkaTuning;
use crate::coordination::connector::{AfterRefusal, ConnectError, Connector, MappingClient, StartAt};
use crate::delivery::destination::Destination;
use crate::delivery::policy::{Disposition, StopReason};
use crate::model::mapping::EventSourceMapping;

/// Connects mappings to their clusters with librdkafka.
#[derive(Debug)]
pub struct KafkaConnector {
    resolver: ClusterResolver,
    tuning: KafkaTuning,
    /// AWS configuration for SQS, SNS and S3 on-failure destinations; `None` loads it from the
    /// environment when a mapping needs it.
    destinations: Option<aws_config::SdkConfig>,
}

impl KafkaConnector {
    pub const fn new(resolver: ClusterResolver, tuning: KafkaTuning) -> Self {
        Self { resolver, tuning, destinations: None }
    }

    /// Uses `sdk` for on-failure destinations instead of the environment's configuration.
    #[must_use]
    pub fn with_destination_sdk(mut self, sdk: &aws_config::SdkConfig) -> Self {
        self.destinations = Some(sdk.clone());
        self
    }
}

/// What a Kafka client failure means for the mapping.
pub const fn kafka_disposition(error: &KafkaClientError) -> Disposition {
    match error {
        KafkaClientError::Authorization { .. } => Disposition::Stop(StopReason::EventSourceAuthzError),
        KafkaClientError::Authentication { .. } | KafkaClientError::TlsVerification { .. } => {
            Disposition::Stop(StopReason::EventSourceAuthnError)
        }
        KafkaClientError::Config { .. } => Disposition::Stop(StopReason::EsmConfigNotValid),
        // Brokers come back, topics get created: wait it out with backoff.
        KafkaClientError::Unreachable { .. }
        | KafkaClientError::TopicNotFound { .. }
        | KafkaClientError::Other { .. } => Disposition::Retry,
    }
}

impl From<KafkaClientError> for ConnectError {
    fn from(error: KafkaClientError) -> Self {
        let message = match kafka_disposition(&error) {
            // AWS's wording where it has one ("SASL authentication failed", …).
            Disposition::Stop(_) => error.last_processing_result(),
            Disposition::Retry => error.to_string(),
        };
        Self { disposition: kafka_disposition(&error), message, credentials_refused: error.may_be_stale_credentials() }
    }
}

impl From<ResolveError> for ConnectError {
    fn from(error: ResolveError) -> Self {
        match error {
            ResolveError::Unrecoverable(reason, message) => Self::stop(reason, message),
            ResolveError::Transient(message) => Self::retry(message),
        }
    }
}

impl Connector for KafkaConnector {
    type Client = KafkaMappingClient;

    async fn after_refusal(&self, mapping: &EventSourceMapping) -> Result<AfterRefusal, ConnectError> {
        Ok(match self.resolver.after_refusal(mapping).await? {
            AuthRetry::Reconnect => AfterRefusal::Reconnect,
            AuthRetry::Backoff => AfterRefusal::Backoff,
            AuthRetry::Stop => AfterRefusal::Stop,
        })
    }

    async fn connect(&self, mapping: &EventSourceMapping) -> Result<KafkaMappingClient, ConnectError> {
        let connection = self.resolver.connection(mapping).await?;
        let settings = KafkaSettings {
            bootstrap_servers: connection.bootstrap_servers.clone(),
            group_id: mapping.consumer_group_id().to_owned(),
            security: connection.security.clone(),
            fetch_wait_max_ms: self.tuning.fetch_wait_max_ms,
            queued_max_kbytes: self.tuning.queued_max_kbytes,
            fetch_queue_backoff_ms: self.tuning.fetch_queue_backoff_ms,
            request_timeout: self.tuning.request_timeout,
        };
        let on_failure = crate::aws::destinations::for_mapping(mapping, &settings, self.destinations.as_ref())
            .await
            .map_err(|e| ConnectError::stop(StopReason::EsmConfigNotValid, format!("PROBLEM: {e}")))?;
        let connected = serve_main_queue(KafkaClient::new(settings.clone(), mapping.topic(), &mapping.uuid)?);
        // The fetch-ahead budget is shared by the topic's partitions: librdkafka's buffer is per
        // partition and fixed when the client is made, so a topic with more partitions than the
        // budget allows at `ESM_QUEUED_MAX_KBYTES` each gets a client with a smaller one. The
        // partitions are the first request the mapping would make anyway; its error is the
        // connection's.
        let partitions = match connected.client.partitions().await {
            Ok(partitions) => partitions,
            Err(e) => {
                close(connected).await;
                return Err(e.into());
            }
        };
        let share =
            super::fetch_share_kbytes(self.tuning.fetch_buffer_kbytes, partitions.len(), settings.queued_max_kbytes);
        if share >= settings.queued_max_kbytes {
            return Ok(connected.finish(&connection.bootstrap_servers, on_failure));
        }
        debug!(mapping = %mapping.uuid, partitions = partitions.len(), queued_max_kbytes = share, "Fetch-ahead buffer per partition within the budget.");
        close(connected).await;
        let settings = KafkaSettings { queued_max_kbytes: share, ..settings };
        Ok(serve_main_queue(KafkaClient::new(settings, mapping.topic(), &mapping.uuid)?)
            .finish(&connection.bootstrap_servers, on_failure))
    }
}

/// Closing a client may wait on the network: keep it off the async threads.
async fn close(connected: Connected) {
    let _ = tokio::task::spawn_blocking(move || drop(connected)).await;
}

/// A client whose main queue is being served.
struct Connected {
    client: KafkaClient,
    failure: watch::Receiver<Option<ConnectError>>,
    main_queue: AbortOnDrop,
}

/// Serves the client's main queue from the start: librdkafka reports connection and TLS failures
/// there, and they are what makes a failed request explain itself.
fn serve_main_queue(client: KafkaClient) -> Connected {
    let (failure_tx, failure) = watch::channel(None);
    let main_queue = {
        let client = client.clone();
        tokio::spawn(async move {
            let error = client.serve_main_queue().await;
            failure_tx.send_replace(Some(ConnectError::from(error)));
        })
    };
    Connected { client, failure, main_queue: AbortOnDrop(main_queue) }
}

impl Connected {
    fn finish(self, bootstrap_servers: &str, on_failure: Option<Arc<dyn Destination>>) -> KafkaMappingClient {
        KafkaMappingClient {
            client: self.client,
            bootstrap_servers: Arc::from(bootstrap_servers),
            on_failure,
            failure: self.failure,
            _main_queue: Arc::new(self.main_queue),
        }
    }
}

/// A [`KafkaClient`] as a [`MappingClient`].
#[derive(Debug, Clone)]
pub struct KafkaMappingClient {
    client: KafkaClient,
    bootstrap_servers: Arc<str>,
    on_failure: Option<Arc<dyn Destination>>,
    failure: watch::Receiver<Option<ConnectError>>,
    _main_queue: Arc<AbortOnDrop>,
}

#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl MappingClient for KafkaMappingClient {
    type Source = KafkaPartitionSource;
    type Checkpoint = KafkaCheckpoint;

    fn bootstrap_servers(&self) -> &str {
        &self.bootstrap_servers
    }

    async fn partitions(&self) -> Result<Vec<i32>, ConnectError> {
        Ok(self.client.partitions().await?)
    }

    async fn start_offset(
        &self,
        partition: i32,
        committed: Option<i64>,
        start: StartAt,
    ) -> Result<(i64, bool), ConnectError> {
        let committed = BTreeMap::from([(partition, committed)]);
        let (starts, resolved) = self.client.start_offsets(&committed, start.position, start.timestamp_ms).await?;
        let offset = starts
            .get(&partition)
            .copied()
            .ok_or_else(|| ConnectError::retry(format!("no start offset for partition {partition}")))?;
        Ok((offset, resolved.contains_key(&partition)))
    }

    fn open(&self, partition: i32, offset: i64) -> Result<KafkaPartitionSource, ConnectError> {
        Ok(self.client.open_partition(partition, offset)?)
    }

    fn close(&self, partition: i32) {
        if let Err(e) = self.client.close_partition(partition) {
            tracing::warn!(topic = %self.client.topic(), partition, error = %e, "Cannot unassign the partition.");
        }
    }

    fn lag(&self, partition: i32, next_offset: i64) -> Option<u64> {
        self.client.lag(partition, next_offset)
    }

    fn checkpoint(&self) -> KafkaCheckpoint {
        self.client.checkpoint()
    }

    fn on_failure(&self) -> Option<Arc<dyn Destination>> {
        self.on_failure.clone()
    }

    async fn failed(&self) -> ConnectError {
        let mut failure = self.failure.clone();
        let error = match failure.wait_for(Option::is_some).await {
            Ok(error) => error.clone(),
            Err(_) => None,
        };
        match error {
            Some(error) => error,
            // The main-queue task is gone without a word: only when the client is dropped.
            None => std::future::pending().await,
        }
    }
}

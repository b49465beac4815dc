//! The Kafka seam at the level the control plane needs: connect a mapping, list its topic's
//! partitions, find where a partition starts, open and close it, measure lag, checkpoint. The
//! librdkafka implementation is [`crate::kafka::KafkaConnector`]; the test kit has one in memory,
//! so the supervisor's rules run in-process without a broker.
//!
//! Errors arrive classified: the adapter that produced an error knows whether waiting can help
//! ([`Disposition::Retry`]) or a human must act ([`Disposition::Stop`] with the AWS reason).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use crate::delivery::checkpoint::Checkpoint;
use crate::delivery::destination::Destination;
use crate::delivery::policy::{Disposition, StopReason};
use crate::delivery::record::RecordSource;
use crate::model::mapping::{EventSourceMapping, StartingPosition};

/// A failure of the Kafka side, already classified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConnectError {
    pub disposition: Disposition,
    /// For the log and, when the mapping stops, for `LastProcessingResult` (never a secret).
    pub message: String,
    /// Credentials were refused: the connector should forget cached secrets and try once more
    /// before the mapping is stopped (a rotated secret).
    pub credentials_refused: bool,
}

impl ConnectError {
    pub fn retry(message: impl Into<String>) -> Self {
        Self { disposition: Disposition::Retry, message: message.into(), credentials_refused: false }
    }

    pub fn stop(reason: StopReason, message: impl Into<String>) -> Self {
        Self { disposition: Disposition::Stop(reason), message: message.into(), credentials_refused: false }
    }
}

/// Where a partition without a committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartAt {
    pub position: StartingPosition,
    /// With `AT_TIMESTAMP`: epoch milliseconds.
    pub timestamp_ms: Option<i64>,
}

impl StartAt {
    /// The mapping's starting position, or the earliest record for a partition that appeared
    /// after the mapping started (its lease says so).
    pub fn for_partition(mapping: &EventSourceMapping, from_earliest: bool) -> Self {
        if from_earliest {
            return Self { position: StartingPosition::TrimHorizon, timestamp_ms: None };
        }
        Self {
            position: mapping.starting_position.unwrap_or(StartingPosition::Latest),
            timestamp_ms: mapping.starting_timestamp_ms(),
        }
    }
}

/// Opens mapping clients.
pub trait Connector: Send + Sync + 'static {
    type Client: MappingClient;

    /// A client for the mapping's topic (resolving the cluster, fetching secrets). No partition
    /// is read yet.
    fn connect(&self, mapping: &EventSourceMapping) -> impl Future<Output = Result<Self::Client, ConnectError>> + Send;

    /// After the cluster refused the mapping's credentials: whether to reconnect at once (a
    /// rotated secret was read again), retry after the usual backoff (a rotation may be half
    /// done), or stop the mapping.
    ///
    /// # Errors
    /// The credentials cannot be read again now, or any more.
    fn after_refusal(
        &self,
        _mapping: &EventSourceMapping,
    ) -> impl Future<Output = Result<AfterRefusal, ConnectError>> + Send {
        async { Ok(AfterRefusal::Stop) }
    }
}

/// What to do after the cluster refused a mapping's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterRefusal {
    Reconnect,
    Backoff,
    Stop,
}

/// One mapping's connection to its topic in one poller.
pub trait MappingClient: Clone + Send + Sync + 'static {
    type Source: RecordSource + 'static;
    type Checkpoint: Checkpoint + Clone;

    /// The comma-separated broker list, as the event's `bootstrapServers` says it.
    fn bootstrap_servers(&self) -> &str;

    /// The topic's partitions.
    fn partitions(&self) -> impl Future<Output = Result<Vec<i32>, ConnectError>> + Send;

    /// Where `partition` starts: its committed offset, or `start` resolved to a concrete offset.
    /// Returns `(offset, resolved)`, `resolved` when the offset came from `start` (the caller
    /// commits it at once, so a restart never re-resolves `LATEST` past unread records).
    fn start_offset(
        &self,
        partition: i32,
        committed: Option<i64>,
        start: StartAt,
    ) -> impl Future<Output = Result<(i64, bool), ConnectError>> + Send;

    /// Starts reading `partition` at `offset`.
    fn open(&self, partition: i32, offset: i64) -> Result<Self::Source, ConnectError>;

    /// Stops reading `partition`.
    fn close(&self, partition: i32);

    /// Records waiting in `partition` after `next_offset`, as last measured (no request).
    fn lag(&self, partition: i32, next_offset: i64) -> Option<u64>;

    /// The consumer group's offsets.
    fn checkpoint(&self) -> Self::Checkpoint;

    /// Resolves when the client as a whole fails and must be rebuilt.
    fn failed(&self) -> impl Future<Output = ConnectError> + Send;

    /// Where the mapping's given-up records go (`DestinationConfig.OnFailure`), built at connect.
    fn on_failure(&self) -> Option<Arc<dyn Destination>> {
        None
    }
}

/// Committed offsets of a few partitions, `None` where the group has none.
pub type Committed = BTreeMap<i32, Option<i64>>;
